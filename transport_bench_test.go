package failover_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmfailover/failover"
)

// okRT answers every request with a small 200 JSON body, in memory.
var okRT = roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"ok":true}`)), ContentLength: 11, Request: r}, nil
})

const benchChat = `{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in three languages, please."}],"max_tokens":64}`

// BenchmarkTransport is a healthy Transport call on an in-memory upstream:
// without limits, and with a TPM limit (the body is then estimated).
func BenchmarkTransport(b *testing.B) {
	for _, tc := range []struct {
		name   string
		limits failover.Limits
	}{{"plain", failover.Limits{}}, {"tpm", failover.Limits{TPM: 1 << 30}}} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "a", Limits: tc.limits,
				Client: failover.Upstream{BaseURL: "https://a.example/v1", Key: "k", Transport: okRT}}})
			if err != nil {
				b.Fatal(err)
			}
			tr := failover.NewTransport(p)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, "http://failover.local/v1/chat/completions", strings.NewReader(benchChat))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}

// BenchmarkEstimateBodyTokens is the estimate Transport makes of a chat
// body when a member limits tokens.
func BenchmarkEstimateBodyTokens(b *testing.B) {
	body := []byte(benchChat)
	for b.Loop() {
		_ = failover.EstimateBodyTokens("/v1/chat/completions", body)
	}
}
