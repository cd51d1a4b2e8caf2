package failover_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmfailover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordURL answers 200 {} and records the URL each request went to.
func recordURL(urls *[]string) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		*urls = append(*urls, r.URL.String())
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{}`)), Request: r}, nil
	})
}

// Routing keeps the request's path but for the member's base path and a
// version segment the two share; a version is a whole segment.
func TestTransportRouting(t *testing.T) {
	const gemini = "https://generativelanguage.googleapis.com"
	for _, tc := range []struct{ base, req, want string }{
		// Gemini, bare host and with the version.
		{gemini, "/v1beta/models/gemini-2.5-flash:generateContent", gemini + "/v1beta/models/gemini-2.5-flash:generateContent"},
		{gemini + "/v1beta", "/v1beta/models/gemini-2.5-flash:generateContent", gemini + "/v1beta/models/gemini-2.5-flash:generateContent"},
		{gemini + "/v1beta/", "/v1beta/models/x:streamGenerateContent?alt=sse", gemini + "/v1beta/models/x:streamGenerateContent?alt=sse"},
		{gemini, "/v1beta/models/x:streamGenerateContent?alt=sse", gemini + "/v1beta/models/x:streamGenerateContent?alt=sse"},
		{gemini + "/v1", "/v1beta/models/x:generateContent", gemini + "/v1/models/x:generateContent"}, // the member's version wins
		{gemini + "/v1beta/openai", "/v1/chat/completions", gemini + "/v1beta/openai/chat/completions"},
		// Anthropic.
		{"https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/v1", "/v1/messages", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/v1", "/messages", "https://api.anthropic.com/v1/messages"},
		// OpenAI and OpenRouter.
		{"https://api.openai.com/v1", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions"},
		{"https://api.openai.com", "/v1/responses", "https://api.openai.com/v1/responses"},
		{"https://openrouter.ai/api/v1", "/v1/chat/completions", "https://openrouter.ai/api/v1/chat/completions"},
		{"https://openrouter.ai/api/v1", "/chat/completions", "https://openrouter.ai/api/v1/chat/completions"},
		{"https://openrouter.ai/api/v1", "/api/v1/chat/completions", "https://openrouter.ai/api/v1/chat/completions"},
		// A segment that only starts like a version is no version.
		{"https://x.example/v1", "/v1x/chat", "https://x.example/v1/v1x/chat"},
		{"https://x.example/v1beta", "/v1betax/chat", "https://x.example/v1beta/v1betax/chat"},
		// Azure: deployments path and api-version kept; the base URL's query added.
		{"https://x.openai.azure.com/openai", "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
			"https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"},
		{"https://x.openai.azure.com/openai", "/deployments/gpt4o/chat/completions?api-version=2024-10-21",
			"https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"},
		{"https://x.openai.azure.com/openai", "/v1/chat/completions", "https://x.openai.azure.com/openai/v1/chat/completions"},
		{"https://x.openai.azure.com/openai?api-version=2024-10-21", "/openai/deployments/d/embeddings",
			"https://x.openai.azure.com/openai/deployments/d/embeddings?api-version=2024-10-21"},
		{"https://x.openai.azure.com/openai?api-version=2024-10-21", "/openai/deployments/d/embeddings?api-version=2025-01-01",
			"https://x.openai.azure.com/openai/deployments/d/embeddings?api-version=2025-01-01"},
		// An escaped path stays escaped.
		{"https://x.example/v1", "/v1/files/a%2Fb", "https://x.example/v1/files/a%2Fb"},
	} {
		var urls []string
		p, err := failover.New([]failover.Member[failover.Upstream]{{Name: "m", Client: failover.Upstream{
			BaseURL: tc.base, Key: "route-key", Auth: failover.AuthAPIKey, Transport: recordURL(&urls)}}})
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, "http://failover.local"+tc.req, strings.NewReader(`{}`))
		require.NoError(t, err)
		resp, err := failover.NewTransport(p).RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Len(t, urls, 1)
		assert.Equal(t, tc.want, urls[0], "base %s, request %s", tc.base, tc.req)
	}
}
