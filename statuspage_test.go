package failover_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// xssPayload is a provider message that would run script if the page
// parsed it as markup.
const xssPayload = `<script>alert(1)</script><img src=x onerror=alert(2)>`

// pageErr is a scripted provider error with a verdict of its own.
type pageErr struct {
	v   failover.Verdict
	msg string
}

func (e *pageErr) Error() string { return e.msg }

// statusPagePool returns a pool at a fixed time with a cooling member whose
// last error is xssPayload, a disabled member and an active one that served
// a call.
func statusPagePool(t *testing.T) *failover.Pool[string] {
	t.Helper()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	p, err := failover.New([]failover.Member[string]{
		{Name: "free-a", Client: "a", Priority: 0},
		{Name: "free-b", Client: "b", Priority: 0},
		{Name: "paid", Client: "p", Priority: 1, Limits: failover.Limits{TPD: 1_000_000}},
	},
		failover.WithClock(func() time.Time { return now }),
		failover.WithClassifier(func(err error) (failover.Verdict, bool) {
			var pe *pageErr
			if errors.As(err, &pe) {
				return pe.v, true
			}
			return failover.Verdict{}, false
		}))
	require.NoError(t, err)
	_, err = failover.Do(context.Background(), p, func(_ context.Context, m failover.Member[string]) (string, error) {
		switch m.Name {
		case "free-a":
			return "", &pageErr{failover.Verdict{Reason: failover.ReasonRateLimit, Status: 429, RetryAfter: 4 * time.Minute}, "429: " + xssPayload}
		case "free-b":
			return "", &pageErr{failover.Verdict{Reason: failover.ReasonAuth, Status: 401}, "401: invalid api key"}
		}
		return "ok", nil
	}, failover.Tokens(1200))
	require.NoError(t, err)
	require.NoError(t, p.Disable("free-b"))
	return p
}

func serveStatus(h http.Handler, method, accept string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/failover", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// The page goes to clients that prefer text/html; everything else keeps the
// JSON.
func TestStatusHandlerAccept(t *testing.T) {
	h := failover.StatusHandler(statusPagePool(t))
	for _, tc := range []struct {
		accept string
		html   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"application/json, text/html", false},       // a tie keeps the JSON
		{"text/html, application/json", false},       // in either order
		{"text/html;q=0.5, application/json", false}, // JSON preferred
		{"application/json;q=0.5, text/html", true},  // HTML preferred
		{"text/html", true},                          // asks for HTML only
		{"TEXT/HTML", true},                          // media types are case-insensitive
		{"text/*", true},                             // any text
		{"text/html;q=0", false},                     // refuses HTML
		{"text/html;q=0, */*", false},                // the specific range wins
		{"text/html;q=bogus", false},                 // a range with a bad q is ignored
		{"text/plain", false},                        // no HTML asked: JSON as before
		{"text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2", true}, // old Java
		// Browsers' default Accept for a page.
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/png,image/svg+xml,*/*;q=0.8", true},
	} {
		rec := serveStatus(h, http.MethodGet, tc.accept)
		require.Equal(t, http.StatusOK, rec.Code, tc.accept)
		assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"), tc.accept)
		assert.Equal(t, "Accept", rec.Header().Get("Vary"), tc.accept)
		assert.Equal(t, "2025-06-01T12:00:00Z", rec.Header().Get("X-Failover-Now"), tc.accept)
		if tc.html {
			assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"), tc.accept)
			assert.True(t, strings.HasPrefix(rec.Body.String(), "<!doctype html>"), tc.accept)
			assert.NotEmpty(t, rec.Header().Get("Content-Security-Policy"), tc.accept)
		} else {
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), tc.accept)
			assert.Empty(t, rec.Header().Get("Content-Security-Policy"), tc.accept)
		}
	}
}

// The JSON is the pool's Status, as before the page existed.
func TestStatusHandlerJSONUnchanged(t *testing.T) {
	p := statusPagePool(t)
	rec := serveStatus(failover.StatusHandler(p), http.MethodGet, "application/json")
	want, err := json.Marshal(p.Status())
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", rec.Body.String())
	var sts []failover.Status
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &sts))
	require.Len(t, sts, 3)
	assert.Equal(t, failover.CoolingDown, sts[0].State)
	assert.Equal(t, failover.Disabled, sts[1].State)
	assert.Equal(t, failover.Active, sts[2].State)
	assert.Contains(t, sts[0].LastError, xssPayload) // JSON keeps the text; only the page must not run it
}

// HEAD answers both forms with their headers and no body, through a real
// server; other methods are refused.
func TestStatusHandlerHEAD(t *testing.T) {
	srv := httptest.NewServer(failover.StatusHandler(statusPagePool(t)))
	defer srv.Close()
	for _, accept := range []string{"application/json", "text/html"} {
		req, err := http.NewRequest(http.MethodHead, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", accept)
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.StatusCode, accept)
		assert.Empty(t, body, accept)
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"), accept)
		assert.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), map[string]string{"application/json": "application/json", "text/html": "text/html"}[accept]), accept)
	}
	rec := serveStatus(failover.StatusHandler(statusPagePool(t)), http.MethodPost, "text/html")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

var (
	scriptOpen  = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	scriptBlock = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	styleBlock  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
	dataBlock   = regexp.MustCompile(`(?s)<script type="application/json" id="status-data">(.*?)</script>`)
)

// A provider message with markup reaches the page only as JSON text inside
// the data block, escaped so it can neither close the block nor open a tag,
// and the page's script writes data with textContent only.
func TestStatusPageXSS(t *testing.T) {
	rec := serveStatus(failover.StatusHandler(statusPagePool(t)), http.MethodGet, "text/html")
	page := rec.Body.String()

	assert.False(t, strings.Contains(page, xssPayload), "the payload is in the page as markup")
	assert.False(t, strings.Contains(page, "<img"), "an <img> tag in the page")
	// Exactly the page's own two script elements: the data block and the code.
	assert.Len(t, scriptOpen.FindAllString(page, -1), 2)
	assert.Equal(t, 2, strings.Count(strings.ToLower(page), "</script"))

	m := dataBlock.FindStringSubmatch(page)
	require.NotNil(t, m, "data block")
	data := m[1]
	// Outside the data block the page is the same constant for every pool.
	rest := strings.Replace(page, data, "", 1)
	assert.False(t, strings.Contains(rest, "alert("), "data outside the data block")
	assert.False(t, strings.Contains(rest, "onerror"), "data outside the data block")
	assert.NotContains(t, data, "<")
	assert.NotContains(t, data, ">")
	assert.Contains(t, data, `\u003cscript\u003ealert(1)\u003c/script\u003e`)
	var start struct {
		Now    time.Time         `json:"now"`
		Status []failover.Status `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(data), &start))
	require.Len(t, start.Status, 3)
	assert.Equal(t, "429: "+xssPayload, start.Status[0].LastError) // the text itself survives, as data

	// The script never hands a string to an HTML parser.
	code := scriptBlock.FindStringSubmatch(page)
	require.NotNil(t, code, "script")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "DOMParser", "eval(", "Function(", "srcdoc"} {
		assert.NotContains(t, code[1], sink)
	}
	assert.Contains(t, code[1], "textContent")
}

// The Content-Security-Policy loads nothing from elsewhere and runs only the
// page's own style and script, allowed by hash.
func TestStatusPageCSP(t *testing.T) {
	rec := serveStatus(failover.StatusHandler(statusPagePool(t)), http.MethodGet, "text/html")
	csp := rec.Header().Get("Content-Security-Policy")
	page := rec.Body.String()
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	code := scriptBlock.FindStringSubmatch(page)
	style := styleBlock.FindStringSubmatch(page)
	require.NotNil(t, code)
	require.NotNil(t, style)
	assert.Equal(t, "'none'", directives["default-src"])
	assert.Equal(t, hash(code[1]), directives["script-src"])
	assert.Equal(t, hash(style[1]), directives["style-src"])
	assert.Equal(t, "'self'", directives["connect-src"])
	assert.Equal(t, "'none'", directives["frame-ancestors"])
	assert.Equal(t, "'none'", directives["base-uri"])
	assert.Equal(t, "'script'", directives["require-trusted-types-for"])
	assert.NotContains(t, csp, "unsafe-inline")
	assert.NotContains(t, csp, "unsafe-eval")
	assert.NotContains(t, csp, "http:")
	assert.NotContains(t, csp, "https:")
	assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))

	// No external asset: no URL in the document but the page's own.
	assert.NotRegexp(t, `(?i)(src|href)\s*=\s*"(https?:)?//`, page)
	assert.NotContains(t, page, "@import")
	assert.NotContains(t, page, "url(")
	assert.Contains(t, page, `<meta name="viewport" content="width=device-width, initial-scale=1">`)
}

// A nil pool's page is a page with no members, like its JSON is null.
func TestStatusPageNilPool(t *testing.T) {
	rec := serveStatus(failover.StatusHandler[string](nil), http.MethodGet, "text/html")
	assert.Equal(t, http.StatusOK, rec.Code)
	m := dataBlock.FindStringSubmatch(rec.Body.String())
	require.NotNil(t, m)
	assert.Contains(t, m[1], `"status":[]`)
	rec = serveStatus(failover.StatusHandler[string](nil), http.MethodGet, "")
	assert.Equal(t, "null\n", rec.Body.String())
}
