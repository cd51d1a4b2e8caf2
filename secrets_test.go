package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Canaries of no known shape: only the pool's knowledge of its own
// secrets can find them.
const (
	canaryKey    = "Zq7Lw3Xv9Kd2Pm5Rt8Yb1Nc4Hf6Gj0Sa" // 32 characters, no prefix
	canaryKey2   = "Hx2Vb8Nm4Qw6Er1Ty3Ui5Op7As9Df0Gk"
	canaryHeader = "Ms9Tp2Wq7Ez4Rx1Cv8Bn3Ly6Ku5Jh0Gf"
	canaryAzure  = "Ay4Bx8Cw2Dv6Eu0Ft3Gs7Hr1Iq5Jp9Ko"
)

// texts gathers every text that leaves a pool after some calls.
type texts struct {
	ev   events
	logs bytes.Buffer
	all  []string
}

func (x *texts) options() []failover.Option {
	return []failover.Option{
		failover.WithObserver(x.ev.observe),
		failover.WithLogger(slog.New(slog.NewJSONHandler(&x.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
}

func (x *texts) add(errs ...error) {
	for _, err := range errs {
		if err != nil {
			x.all = append(x.all, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%v", err))
		}
	}
}

// collect adds the events, the log, Status and StatusHandler's body.
func collect[C any](t *testing.T, x *texts, p *failover.Pool[C]) []string {
	t.Helper()
	for _, e := range x.ev.all {
		x.add(e.Err)
	}
	b, err := json.Marshal(p.Status())
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	failover.StatusHandler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	return append(x.all, x.logs.String(), string(b), rec.Body.String())
}

func assertNoCanary(t *testing.T, all []string, canaries ...string) {
	t.Helper()
	require.NotEmpty(t, all)
	leaks := 0
	for _, text := range all {
		for _, c := range canaries {
			if strings.Contains(text, c) && leaks < 3 {
				t.Errorf("canary %s… leaked in %q", c[:6], text)
			}
			if strings.Contains(text, c) {
				leaks++
			}
		}
	}
	if leaks > 0 {
		t.Errorf("%d leaks in %d texts", leaks, len(all))
	}
}

// A go-openai member's key of no known shape, echoed by the provider in
// the error message of a 401, a 500 and a 400 (a stop reason returned as
// is), leaves the pool in no text.
func TestSecretsOfUnknownShapeGoOpenAI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script(canaryKey, failovertest.Error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+canaryKey+"."))
		srv.Script(canaryKey2,
			failovertest.Error(500, "server_error", "", "upstream rejected key "+canaryKey2),
			failovertest.Error(400, "invalid_request_error", canaryKey2, "bad request for key "+canaryKey2),
			failovertest.Response{Status: 502, Body: "<html>bad gateway for " + canaryKey2 + "</html>"},
		)
		srv.Script(canaryAzure, failovertest.Error(403, "forbidden", "", "key "+canaryAzure+" may not use this model"))
		azure := openai.DefaultAzureConfig(canaryAzure, failovertest.BaseURL)
		azure.HTTPClient = srv.HTTPClient()
		var x texts
		ms := failover.OpenAIKeys("openai", srv.Config, canaryKey, canaryKey2)
		ms = append(ms, failover.OpenAIMember("azure", azure))
		p, err := failover.New(ms, x.options()...)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)

		_, err1 := client.CreateChatCompletion(ctx, chatReq) // 401, 500, 403: exhausted
		require.ErrorIs(t, err1, failover.ErrExhausted)
		require.NoError(t, p.Enable("openai#2"))
		_, err2 := client.CreateChatCompletion(ctx, chatReq) // 400 from #2: returned as is
		var apiErr *openai.APIError
		require.ErrorAs(t, err2, &apiErr)
		assert.Equal(t, 400, apiErr.HTTPStatusCode)
		_, err3 := client.CreateChatCompletionStream(ctx, chatReq) // 502 HTML from #2
		require.Error(t, err3)
		x.add(err1, err2, err3, apiErr)
		all := collect(t, &x, p)
		assertNoCanary(t, all, canaryKey, canaryKey2, canaryAzure)
		assert.Equal(t, 1, srv.Calls(canaryKey))
		assert.Equal(t, 3, srv.Calls(canaryKey2))
		assert.Contains(t, err1.Error(), "[REDACTED]")
		assert.Equal(t, "bad request for key [REDACTED]", apiErr.Message, "the field itself is redacted in place")
	})
}

// echoTransport answers every request with status, echoing each request
// header's value in the body's message and in a response header.
type echoTransport struct{ status int }

func (e echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	var seen []string
	for k, vs := range r.Header {
		seen = append(seen, k+"="+strings.Join(vs, ","))
	}
	seen = append(seen, "url="+r.URL.String())
	msg, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "rejected: " + strings.Join(seen, " "), "type": "invalid_request_error"}})
	h := http.Header{"Content-Type": {"application/json"}, "X-Echo": {strings.Join(seen, " ")}}
	return &http.Response{StatusCode: e.status, Header: h, Body: io.NopCloser(bytes.NewReader(msg)), Request: r}, nil
}

// Every Upstream credential (each Auth mode, and a custom header) echoed
// by the upstream in body and headers leaves the pool in no text, and
// not in the response the caller's SDK receives.
func TestSecretsOfUnknownShapeTransport(t *testing.T) {
	for _, status := range []int{401, 500, 400} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			auths := []failover.Auth{failover.AuthBearer, failover.AuthAPIKey, failover.AuthXAPIKey, failover.AuthGoogKey, failover.AuthQuery}
			var ms []failover.Member[failover.Upstream]
			var keys []string
			for i, a := range auths {
				key := fmt.Sprintf("Kq%dWn8Rt5Yx2Vb7Mz4Lp1Hs6Dj9Fg3Cu", i)
				keys = append(keys, key)
				ms = append(ms, failover.Member[failover.Upstream]{Name: fmt.Sprintf("m%d", i), Priority: i, Client: failover.Upstream{
					BaseURL: "https://upstream.example/v1", Key: key, Auth: a, Transport: echoTransport{status},
					Header: http.Header{"Ocp-Apim-Subscription-Key": {canaryHeader}, "Anthropic-Version": {"2023-06-01"}},
				}})
			}
			var x texts
			p, err := failover.New(ms, x.options()...)
			require.NoError(t, err)
			hc := &http.Client{Transport: failover.NewTransport(p)}
			for range 2 { // the second finds every member cooling: the pool's 503
				resp, err := hc.Post("http://sdk.invalid/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[]}`))
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				x.all = append(x.all, string(body), fmt.Sprint(resp.Header))
				if status == 400 {
					assert.Equal(t, 400, resp.StatusCode)
					assert.Contains(t, string(body), "Anthropic-Version=2023-06-01", "a setting is not a secret")
				}
			}
			all := collect(t, &x, p)
			assertNoCanary(t, all, append(keys, canaryHeader)...)
		})
	}
}

// hugeBody is an error body of n bytes made on the fly; it counts what is
// read of it.
type hugeBody struct {
	n, read int64
	total   *atomic.Int64
}

func (b *hugeBody) Read(p []byte) (int, error) {
	if b.read >= b.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), b.n-b.read)
	for i := range p[:k] {
		p[i] = 'x'
	}
	b.read += k
	b.total.Add(k)
	return int(k), nil
}
func (b *hugeBody) Close() error { return nil }

// A 500 with a 32 MB body: at most 64 KiB of it is read on the plain and
// the streaming path, the call moves on to the healthy member, and the
// error text in Status, events and logs stays small.
func TestHugeErrorBodyGoOpenAI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var read atomic.Int64
		bad := openai.DefaultConfig("sk-bad-0123456789")
		bad.BaseURL = "http://huge.invalid/v1"
		bad.HTTPClient = doerFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Header: http.Header{"Content-Type": {"text/plain"}},
				Body: &hugeBody{n: 32 << 20, total: &read}, Request: r}, nil
		})
		srv := failovertest.NewServer()
		var x texts
		p, err := failover.New([]failover.Member[*openai.Client]{
			failover.OpenAIMember("huge", bad),
			func() failover.Member[*openai.Client] {
				m := failover.OpenAIMember("good", srv.Config("sk-good-0123456789"))
				m.Priority = 1
				return m
			}(),
		}, x.options()...)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)

		resp, err := client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.NotEmpty(t, resp.Choices)
		require.NoError(t, p.Enable("huge"))
		s, err := client.CreateChatCompletionStream(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, "good", s.Member())
		_ = s.Close()

		assert.LessOrEqual(t, read.Load(), int64(2*(64<<10)), "at most 64 KiB of each error body is read")
		assert.Equal(t, 2, srv.Calls("sk-good-0123456789"))
		st := p.Status()[0]
		assert.LessOrEqual(t, len(st.LastError), 520)
		for _, e := range x.ev.all {
			if e.Err != nil {
				assert.LessOrEqual(t, len(e.Err.Error()), 2<<10+8)
			}
		}
		assert.Less(t, x.logs.Len(), 64<<10, "log records carry a bounded error text")
	})
}

// The error text of a generic Do is bounded too: a huge error of the
// caller's own function is cut before it is redacted.
func TestHugeErrorTextIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		huge := fmt.Errorf("status 500: %s", strings.Repeat("y", 8<<20))
		var x texts
		p := newPool(t, members(&fakeClient{fail: always(huge)}, &fakeClient{}), x.options()...)
		_, err := failover.Do(context.Background(), p, call)
		require.NoError(t, err)
		require.NoError(t, p.Enable("b"))
		p2 := newPool(t, members(&fakeClient{fail: always(huge)}), x.options()...)
		_, err = failover.Do(context.Background(), p2, call)
		require.ErrorIs(t, err, failover.ErrExhausted)
		assert.LessOrEqual(t, len(err.Error()), 3<<10)
		assert.LessOrEqual(t, len(p.Status()[0].LastError), 520)
		assert.Less(t, x.logs.Len(), 32<<10)
	})
}
