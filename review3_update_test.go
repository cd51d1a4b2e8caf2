package failover_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// build clears a member's lacks when Update gives it a Model of its own,
// but an attempt that began under the old config (no Model: the caller's
// passed through) settles after it with the old entry and records its
// lack anyway: the member, which now sends its own model whatever the
// caller asks, is skipped for that model for the permanent window.
func TestReview3UpdateToOwnModelRacesInFlightLack(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	a := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"typo-model"`) {
			close(entered)
			<-release
			return answer(r, 404, `{"error":{"message":"The model `+"`typo-model`"+` does not exist or you do not have access to it.","type":"invalid_request_error","code":"model_not_found"}}`), nil
		}
		return answer(r, 200, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`), nil
	})
	b := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return answer(r, 503, `{"error":{"message":"down","type":"server_error"}}`), nil
	})
	member := func(name string, rt http.RoundTripper, model string) failover.Member[failover.Upstream] {
		return failover.Member[failover.Upstream]{Name: name, Model: model, Priority: len(name),
			Client: failover.Upstream{BaseURL: "https://" + name + ".example/v1", Key: "key-" + name + "-123456", Transport: rt}}
	}
	p, err := failover.New([]failover.Member[failover.Upstream]{member("a", a, ""), member("bb", b, "")})
	require.NoError(t, err)
	tr := failover.NewTransport(p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions", `{"messages":[],"model":"typo-model"}`)
		_ = resp.Body.Close()
	}()
	<-entered
	require.NoError(t, p.Update([]failover.Member[failover.Upstream]{member("a", a, "gpt-4o"), member("bb", b, "")}))
	close(release)
	<-done
	assert.Empty(t, statusOf(p, "a").Lacks, "a serves its own model now: no lack of the caller's applies")
}
