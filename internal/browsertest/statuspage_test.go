package browsertest

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/llmfailover/failover"
)

// xssPayload is a provider message that would run script, twice, if the page
// parsed it as markup.
const xssPayload = `<script>alert(1)</script><img src=x onerror=alert(2)>`

// providerErr is a scripted provider error with its verdict.
type providerErr struct {
	v   failover.Verdict
	msg string
}

func (e *providerErr) Error() string { return e.msg }

// chromium finds the browser, or skips the test with the reason.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FAILOVER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium: install Debian's chromium (apt-get install -y chromium) or set FAILOVER_CHROMIUM to a Chrome binary"
	if os.Getenv("FAILOVER_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// scene is a pool as an operator would see it: one free key cooling on a
// rate limit, one disabled after a 401 whose message is xssPayload, a
// fallback whose short window ended and whose probe is in flight, and the
// paid key that served the traffic.
type scene struct {
	pool    *failover.Pool[string]
	skew    atomic.Int64 // added to the wall clock: the pool's virtual time
	release chan struct{}
	probe   sync.WaitGroup
}

func newScene(t *testing.T) *scene {
	t.Helper()
	s := &scene{release: make(chan struct{})}
	p, err := failover.New([]failover.Member[string]{
		{Name: "gemini-free", Client: "gemini", Model: "gemini-2.0-flash", Priority: 0},
		{Name: "groq-free", Client: "groq", Model: "llama-3.3-70b-versatile", Priority: 0},
		{Name: "openrouter-free", Client: "openrouter", Model: "deepseek/deepseek-chat:free", Priority: 1},
		{Name: "openai-paid", Client: "openai", Model: "gpt-4o-mini", Priority: 2,
			Limits: failover.Limits{RPD: 10_000, TPD: 2_000_000}},
	},
		failover.WithClock(func() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) }),
		failover.WithClassifier(func(err error) (failover.Verdict, bool) {
			var pe *providerErr
			if errors.As(err, &pe) {
				return pe.v, true
			}
			return failover.Verdict{}, false
		}))
	if err != nil {
		t.Fatal(err)
	}
	s.pool = p
	ctx := context.Background()
	failing := func(_ context.Context, m failover.Member[string]) (string, error) {
		switch m.Name {
		case "gemini-free":
			return "", &providerErr{failover.Verdict{Reason: failover.ReasonRateLimit, Status: 429, RetryAfter: 4*time.Minute + 30*time.Second},
				"429 Too Many Requests: Resource has been exhausted (e.g. check quota)."}
		case "groq-free":
			return "", &providerErr{failover.Verdict{Reason: failover.ReasonAuth, Status: 401}, "401 Unauthorized: " + xssPayload}
		case "openrouter-free":
			return "", &providerErr{failover.Verdict{Reason: failover.ReasonOverloaded, Status: 503}, "503 Service Unavailable: upstream overloaded"}
		}
		return "ok", nil
	}
	for i := range 37 {
		if _, err := failover.Do(ctx, p, failing, failover.Tokens(800+i*37)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Disable("groq-free"); err != nil {
		t.Fatal(err)
	}
	// openrouter-free's window (seconds) ends; the next call probes it and
	// holds the probe until the test ends.
	s.skew.Store(int64(time.Minute))
	started := make(chan struct{})
	s.probe.Add(1)
	go func() {
		defer s.probe.Done()
		_, _ = failover.Do(ctx, p, func(ctx context.Context, m failover.Member[string]) (string, error) {
			if m.Name == "openrouter-free" {
				close(started)
				<-s.release
			}
			return "ok", nil
		})
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe of openrouter-free")
	}
	t.Cleanup(func() { close(s.release); s.probe.Wait() })
	want := map[string]failover.State{"gemini-free": failover.CoolingDown, "groq-free": failover.Disabled,
		"openrouter-free": failover.Probing, "openai-paid": failover.Active}
	for _, st := range p.Status() {
		if st.State != want[st.Name] {
			t.Fatalf("%s is %s, want %s", st.Name, st.State, want[st.Name])
		}
	}
	return s
}

// rowsJS returns the name, state, pill word, time left and last error of each row,
// as the page shows them.
const rowsJS = `Array.from(document.querySelectorAll('#rows tr')).map(function (tr) {
  var c = tr.children;
  return {name: tr.getAttribute('data-name'), state: tr.getAttribute('data-state'),
    word: c[1].textContent, reason: c[2].textContent, left: c[3].querySelector('.left').textContent,
    requests: c[4].querySelector('.val > span').textContent, tokens: c[7].textContent, error: c[8].textContent,
    skipped: c[6].textContent,
    colour: getComputedStyle(c[1].querySelector('.pill')).color};
})`

type row struct {
	Name, State, Word, Reason, Left, Requests, Tokens, Error, Colour, Skipped string
}

// The page in a real Chromium: the states of a pool with a cooling, a
// disabled, a probing and an active member, as a colour and a word; the
// cooldown counting down; an update in place when a member recovers; and a
// provider's markup shown as text, with no dialog.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	begin := time.Now()
	s := newScene(t)
	sceneDone := time.Now()
	srv := httptest.NewServer(failover.StatusHandler(s.pool))
	defer srv.Close()

	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 800))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// Every dialog is a failure: record it and dismiss it so the page goes on.
	var dialogs atomic.Int32
	var dialogMsgs sync.Map
	events := chromedp.Events(ctx, page.JavascriptDialogOpening) // subscribes (and starts the browser) now
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			dialogs.Add(1)
			dialogMsgs.Store(ev.Message, true)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	// Record CSP violations from the first line of the document on: a hash
	// that does not match the page's own script or style would show here.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });`,
	}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/failover"), chromedp.WaitVisible(chromedp.CSS(`#rows tr`))); err != nil {
		t.Fatal(err)
	}
	loaded := time.Now()
	rows := readRows(ctx, t)
	want := []struct{ name, state, word string }{
		{"gemini-free", "cooling_down", "cooling down"},
		{"groq-free", "disabled", "disabled"},
		{"openrouter-free", "probing", "probing"},
		{"openai-paid", "active", "active"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	colours := map[string]bool{}
	for i, w := range want {
		r := rows[i]
		if r.Name != w.name || r.State != w.state || r.Word != w.word {
			t.Errorf("row %d: %s %s %q, want %s %s %q", i, r.Name, r.State, r.Word, w.name, w.state, w.word)
		}
		colours[r.Colour] = true
	}
	if len(colours) != 4 {
		t.Errorf("the four states have %d colours: %v", len(colours), colours)
	}
	if r := rows[0]; r.Reason != "rate_limit" || !strings.HasSuffix(r.Left, "s") || !strings.HasPrefix(r.Left, "3m") {
		t.Errorf("cooling row: reason %q, time left %q; want rate_limit and 3m..s", r.Reason, r.Left)
	}
	if r := rows[1]; r.Reason != "auth" || r.Left != "until Enable" {
		t.Errorf("disabled row: reason %q, time left %q", r.Reason, r.Left)
	}
	// 37 calls of 800, 837, ... tokens: 54,242.
	if r := rows[3]; r.Requests != "37" || r.Tokens != "54,242of 2,000,000 today" {
		t.Errorf("active row: requests %q, tokens %q", r.Requests, r.Tokens)
	}

	// The calls made while gemini-free cooled passed it over: 36 of the
	// 37, and the probe's call.
	if r, st := rows[0], s.pool.Status()[0]; r.Skipped != "3737 cooling" || st.Skipped.Cooling != 37 {
		t.Errorf("cooling row: skipped %q, Status %+v; want 37 cooling", r.Skipped, st.Skipped)
	}

	// The provider's markup is the row's text: no element came of it, no
	// dialog opened, nothing broke the page's policy.
	if got := rows[1].Error; got != "401 Unauthorized: "+xssPayload {
		t.Errorf("the last error shows as %q, want the text itself", got)
	}
	dom, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`({
		imgs: document.querySelectorAll('img').length,
		scripts: document.querySelectorAll('script').length,
		errKids: document.querySelector('tr[data-name="groq-free"] .err').childElementCount,
		csp: window.__csp})`))
	if err != nil {
		t.Fatal(err)
	}
	if dom["imgs"] != float64(0) || dom["scripts"] != float64(2) || dom["errKids"] != float64(0) {
		t.Errorf("the payload made elements: %v", dom)
	}
	if v, _ := dom["csp"].([]any); len(v) != 0 {
		t.Errorf("CSP violations: %v", v)
	}

	// The countdown runs in the browser, between refreshes.
	before := rows[0].Left
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('tr[data-name="gemini-free"] .left').textContent !== `+jsString(before),
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("the time left stays %q: %v", before, err)
	}

	if path := os.Getenv("FAILOVER_SCREENSHOT"); path != "" {
		screenshot(ctx, t, path, 1280, 0)
	}
	if path := os.Getenv("FAILOVER_SCREENSHOT_PHONE"); path != "" {
		screenshot(ctx, t, path, 390, 844)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
			t.Fatal(err)
		}
	}

	// The cooling key recovers: the same row, in the same document, turns
	// active within a couple of refreshes.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.__sameDocument = true; document.querySelector('tr[data-name="gemini-free"]').__sameRow = true`)); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.Enable("gemini-free"); err != nil {
		t.Fatal(err)
	}
	enabled := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(function () {
		var tr = document.querySelector('tr[data-name="gemini-free"]');
		return tr && tr.getAttribute('data-state') === 'active' && tr.children[1].textContent === 'active';
	})()`, chromedp.WithPollingTimeout(6*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("gemini-free still shows %+v after Enable: %v", readRows(ctx, t)[0], err)
	}
	updated := time.Since(enabled)
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__sameDocument === true && document.querySelector('tr[data-name="gemini-free"]').__sameRow === true && document.querySelectorAll('#rows tr').length === 4`))
	if err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Error("the page reloaded or rebuilt its rows instead of updating them in place")
	}
	if r := readRows(ctx, t)[0]; r.Left != "—" {
		t.Errorf("the recovered row shows time left %q", r.Left)
	}
	if n := dialogs.Load(); n != 0 {
		var msgs []string
		dialogMsgs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d dialogs opened: %q", n, msgs)
	}
	t.Logf("scene %v, browser start and page load %v, update in place %v after Enable, total %v",
		sceneDone.Sub(begin).Round(time.Millisecond), loaded.Sub(sceneDone).Round(time.Millisecond), updated.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}

// The page at a phone's width is a stack of cards: no table header, one
// block per member, nothing wider than the screen.
func TestStatusPagePhoneLayout(t *testing.T) {
	bin := chromium(t)
	s := newScene(t)
	srv := httptest.NewServer(failover.StatusHandler(s.pool))
	defer srv.Close()
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU)...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(srv.URL),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr`)),
	); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`({
		row: getComputedStyle(document.querySelector('#rows tr')).display,
		head: document.querySelector('thead').getBoundingClientRect().height,
		wide: document.documentElement.scrollWidth,
		label: getComputedStyle(document.querySelector('#rows td.reason'), '::before').content})`))
	if err != nil {
		t.Fatal(err)
	}
	if got["row"] != "block" || got["head"].(float64) > 1 || got["wide"].(float64) > 390 || got["label"] != `"Reason"` {
		t.Errorf("at 390 px: %v; want block rows, a hidden header, no overflow and labelled cells", got)
	}
}

func readRows(ctx context.Context, t *testing.T) []row {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](rowsJS))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// screenshot saves the whole page at the given width (height 0: the page's).
func screenshot(ctx context.Context, t *testing.T, path string, width, height int64) {
	t.Helper()
	if height == 0 {
		height = 300 // the full screenshot grows to the page's height
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height, chromedp.EmulateScale(2)), chromedp.Sleep(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(buf))
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}
