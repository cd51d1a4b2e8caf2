package failover_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/llmfailover/failover"
)

// notFoundUpstream serves the models in has and answers any other with
// 404 and the body miss returns: a real provider's wording.
type notFoundUpstream struct {
	mu    sync.Mutex
	has   map[string]bool
	miss  func(model string) string
	asked []string
}

func (u *notFoundUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	model := ""
	if i := strings.Index(string(b), `"model":"`); i >= 0 {
		rest := string(b)[i+len(`"model":"`):]
		model = rest[:strings.IndexByte(rest, '"')]
	}
	u.mu.Lock()
	u.asked = append(u.asked, model)
	u.mu.Unlock()
	if !u.has[model] {
		return answer(r, 404, u.miss(model)), nil
	}
	return answer(r, 200, `{"id":"c","object":"chat.completion","model":"`+model+`","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`), nil
}

// A caller's typo'd model on a pass-through member must cost that model
// only, whatever the provider's wording of model_not_found. lacks.go's
// modelGone misses several real ones, so missing() answers missingNothing
// and settle benches the member (permanent lane) for every model.
func TestReview3ModelNotFoundWordingsLackTheModel(t *testing.T) {
	for _, c := range []struct {
		name, path string
		miss       func(model string) string
	}{
		// Anthropic's own not_found for a model (anthropics/claude-code#5349).
		{"anthropic", "/v1/messages", func(m string) string {
			return `{"type":"error","error":{"type":"not_found_error","message":"model: ` + m + `"},"request_id":"req_011"}`
		}},
		// Ollama's OpenAI-compatible endpoint.
		{"ollama", "/v1/chat/completions", func(m string) string {
			return `{"error":{"message":"model \"` + m + `\" not found, try pulling it first","type":"api_error","param":null,"code":null}}`
		}},
		// OpenAI: a completions-only model on the chat endpoint (404, param "model").
		{"openai-not-chat", "/v1/chat/completions", func(m string) string {
			return `{"error":{"message":"This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use v1/completions?","type":"invalid_request_error","param":"model","code":null}}`
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &notFoundUpstream{has: map[string]bool{"good": true}, miss: c.miss}
			p := upstreamPool(t, nil, a)
			tr := failover.NewTransport(p)
			resp := do(t, tr, http.MethodPost, "http://x"+c.path, `{"messages":[],"model":"typo-model"}`)
			_ = resp.Body.Close()
			assert.Equal(t, 404, resp.StatusCode)
			st := statusOf(p, "a")
			assert.Equal(t, failover.Active, st.State, "a stays in rotation for other models (got %s, reason %s)", st.State, st.Reason)
			resp = do(t, tr, http.MethodPost, "http://x"+c.path, `{"messages":[],"model":"good"}`)
			_ = resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode, "a serves a model it has")
		})
	}
}

// OpenRouter's 404 "No endpoints found that support tool use" refuses a
// feature of the request (tools), not the model: modelGone's "no endpoints
// found" takes it for the model, so the member is skipped for that model
// for the permanent lane's window, also for calls without tools.
func TestReview3OpenRouterToolRefusalKeepsNoLack(t *testing.T) {
	a := &notFoundUpstream{has: map[string]bool{}, miss: func(string) string {
		return `{"error":{"message":"No endpoints found that support tool use. To learn more about provider routing, visit: https://openrouter.ai/docs/provider-routing","code":404}}`
	}}
	p := upstreamPool(t, nil, a)
	tr := failover.NewTransport(p)
	resp := do(t, tr, http.MethodPost, "http://x/v1/chat/completions",
		`{"messages":[],"model":"meta-llama/llama-3-8b","tools":[{"type":"function","function":{"name":"f"}}]}`)
	_ = resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)
	st := statusOf(p, "a")
	assert.Equal(t, failover.Active, st.State)
	assert.Empty(t, st.Lacks, "a refused tools, not the model: a call without tools may still go to it")
}
