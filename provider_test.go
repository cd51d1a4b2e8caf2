package failover_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

// ProviderOf names providers by their documented base URLs, as
// gen_ai.provider.name spells them, and nothing for an unknown host.
func TestProviderOf(t *testing.T) {
	for url, want := range map[string]string{
		"https://api.openai.com/v1":                                  "openai",
		"https://my-resource.openai.azure.com/":                      "azure.ai.openai",
		"https://api.anthropic.com":                                  "anthropic",
		"https://generativelanguage.googleapis.com/v1beta":           "gcp.gemini",
		"https://us-central1-aiplatform.googleapis.com/v1":           "gcp.vertex_ai",
		"https://bedrock-runtime.us-east-1.amazonaws.com":            "aws.bedrock",
		"https://runtime.sagemaker.us-east-1.amazonaws.com":          "",
		"https://my-res.cognitiveservices.azure.com/":                "azure.ai.openai",
		"https://my-hub.services.ai.azure.com/models":                "azure.ai.inference",
		"https://api.groq.com/openai/v1":                             "groq",
		"https://API.DeepSeek.com":                                   "deepseek",
		"https://api.mistral.ai/v1":                                  "mistral_ai",
		"https://api.x.ai/v1":                                        "x_ai",
		"https://api.perplexity.ai":                                  "perplexity",
		"https://openrouter.ai/api/v1":                               "openrouter",
		"https://api.cerebras.ai/v1":                                 "cerebras",
		"http://localhost:11434/v1":                                  "",
		"https://api.openai.com.evil.example/v1":                     "",
		"https://notapi.openai.com/v1":                               "",
		"::not a url":                                                "",
		"":                                                           "",
		"https://generativelanguage.googleapis.com.attacker.test/v1": "",
	} {
		assert.Equal(t, want, failover.ProviderOf(url), url)
	}
}

// OpenAIMember and Upstream members name their provider; a Provider set
// by hand stays; Status shows it.
func TestMemberProvider(t *testing.T) {
	groq := openai.DefaultConfig("k")
	groq.BaseURL = "https://api.groq.com/openai/v1"
	azure := openai.DefaultAzureConfig("k", "https://res.example.com/")
	local := openai.DefaultConfig("k")
	local.BaseURL = "http://localhost:8000/v1"
	mine := failover.OpenAIMember("mine", local)
	mine.Provider = "vllm"
	for m, want := range map[string]string{
		failover.OpenAIMember("openai", openai.DefaultConfig("k")).Provider: "openai",
		failover.OpenAIMember("groq", groq).Provider:                        "groq",
		failover.OpenAIMember("azure", azure).Provider:                      "azure.ai.openai",
		failover.OpenAIMember("local", local).Provider:                      "",
	} {
		assert.Equal(t, want, m)
	}
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "claude", Client: failover.Upstream{BaseURL: "https://api.anthropic.com", Key: "k"}},
		{Name: "proxy", Client: failover.Upstream{BaseURL: "http://10.0.0.1:4000", Key: "k"}, Provider: "litellm"},
	})
	require.NoError(t, err)
	st := p.Status()
	assert.Equal(t, "anthropic", st[0].Provider)
	assert.Equal(t, "litellm", st[1].Provider)
	op, err := failover.New([]failover.Member[*openai.Client]{mine})
	require.NoError(t, err)
	assert.Equal(t, "vllm", op.Status()[0].Provider)
}

// OpenAI's methods and Transport name the operation of their calls for
// hooks, unless the caller's context names one.
func TestOperationNamed(t *testing.T) {
	var mu sync.Mutex
	var ops []string
	hooks := failover.WithHooks(failover.Hooks{Call: func(ctx context.Context) (context.Context, func(error)) {
		mu.Lock()
		ops = append(ops, failover.OperationOf(ctx))
		mu.Unlock()
		return ctx, func(error) {}
	}})
	good := &usageUpstream{status: http.StatusOK, body: func(path string) string {
		switch {
		case strings.HasSuffix(path, "/embeddings"):
			return `{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":1}}`
		case strings.HasSuffix(path, "/completions") && !strings.HasSuffix(path, "/chat/completions"):
			return `{"id":"t","object":"text_completion","choices":[{"text":"a"}]}`
		}
		return chatJSON
	}}
	cfg := openai.DefaultConfig("k")
	cfg.BaseURL, cfg.HTTPClient = "http://x.test/v1", &http.Client{Transport: good}
	p, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", cfg)}, hooks)
	require.NoError(t, err)
	o := failover.NewOpenAI(p)
	ctx := context.Background()
	chat := openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
	_, err = o.CreateChatCompletion(ctx, chat)
	require.NoError(t, err)
	_, err = o.CreateCompletion(ctx, openai.CompletionRequest{Model: "m", Prompt: "hi"})
	require.NoError(t, err)
	_, err = o.CreateEmbeddings(ctx, openai.EmbeddingRequestStrings{Input: []string{"a"}, Model: "e"})
	require.NoError(t, err)
	_, err = o.CreateChatCompletion(failover.WithOperation(ctx, "invoke_agent"), chat)
	require.NoError(t, err)

	tp, err := failover.New([]failover.Member[failover.Upstream]{{Name: "u", Client: failover.Upstream{BaseURL: "http://u.test", Key: "k", Transport: good}}}, hooks)
	require.NoError(t, err)
	client := &http.Client{Transport: failover.NewTransport(tp)}
	for _, path := range []string{"/v1/messages", "/v1beta/models/g:generateContent", "/v1beta/models/g:streamGenerateContent", "/v1/embeddings", "/v1/models"} {
		resp, err := client.Post("http://failover.local"+path, "application/json", strings.NewReader(`{}`))
		require.NoError(t, err, path)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
	}
	assert.Equal(t, []string{"chat", "text_completion", "embeddings", "invoke_agent",
		"chat", "generate_content", "generate_content", "embeddings", ""}, ops)

	// Without hooks nothing is named: the context stays the caller's.
	plain, err := failover.New([]failover.Member[*openai.Client]{failover.OpenAIMember("a", cfg)})
	require.NoError(t, err)
	_, err = failover.NewOpenAI(plain).CreateChatCompletion(ctx, chat)
	require.NoError(t, err)
}
