package failover

import (
	"context"
	"net/url"
	"strings"
)

// ProviderOf names the provider of an API base URL as the OpenTelemetry
// GenAI conventions spell gen_ai.provider.name: "openai" for
// api.openai.com, "azure.ai.openai" for an Azure OpenAI resource,
// "azure.ai.inference" for Azure AI Foundry's services.ai.azure.com,
// "anthropic", "gcp.gemini" (the Gemini API), "gcp.vertex_ai", "aws.bedrock"
// (bedrock hosts only),
// "groq", "deepseek", "mistral_ai", "x_ai", "perplexity", "cohere"; and
// "openrouter", "together", "fireworks" and "cerebras" for those hosts. It
// returns "" for any other host (a proxy, a local server): name those
// members' Provider yourself.
func ProviderOf(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if strings.HasPrefix(host, "bedrock") && strings.HasSuffix(host, ".amazonaws.com") {
		return "aws.bedrock" // bedrock-runtime.<region>.amazonaws.com, not any AWS host
	}
	for _, p := range providerHosts() {
		if host == p.host || strings.HasSuffix(host, "."+p.host) || (p.region && strings.HasSuffix(host, "-"+p.host)) {
			return p.name
		}
	}
	return ""
}

// providerHost is a host, or the domain it is under, and its provider;
// region allows a "region-" prefix as well.
type providerHost struct {
	host, name string
	region     bool
}

// providerHosts maps a host, or the domain it is under, to its provider.
// Source: the gen_ai.provider.name values of the OpenTelemetry GenAI
// semantic conventions (registry), and the providers' documented base
// URLs.
func providerHosts() []providerHost {
	return []providerHost{
		{host: "api.openai.com", name: "openai"},
		{host: "openai.azure.com", name: "azure.ai.openai"},
		{host: "api.anthropic.com", name: "anthropic"},
		{host: "generativelanguage.googleapis.com", name: "gcp.gemini"},
		{host: "aiplatform.googleapis.com", name: "gcp.vertex_ai", region: true}, // us-central1-aiplatform.googleapis.com
		{host: "cognitiveservices.azure.com", name: "azure.ai.openai"},
		{host: "services.ai.azure.com", name: "azure.ai.inference"},
		{host: "api.groq.com", name: "groq"},
		{host: "api.deepseek.com", name: "deepseek"},
		{host: "api.mistral.ai", name: "mistral_ai"},
		{host: "api.x.ai", name: "x_ai"},
		{host: "api.perplexity.ai", name: "perplexity"},
		{host: "api.cohere.ai", name: "cohere"},
		{host: "api.cohere.com", name: "cohere"},
		{host: "openrouter.ai", name: "openrouter"},
		{host: "api.together.xyz", name: "together"},
		{host: "api.fireworks.ai", name: "fireworks"},
		{host: "api.cerebras.ai", name: "cerebras"},
	}
}

// providerOf is the provider of a member's client when the pool can tell:
// an Upstream's base URL.
func providerOf(client any) string {
	if u, ok := client.(Upstream); ok {
		return ProviderOf(u.BaseURL)
	}
	return ""
}

type operationKey struct{}

// WithOperation returns ctx naming the GenAI operation of the calls made
// with it, as gen_ai.operation.name spells it: "chat", "text_completion",
// "embeddings", "generate_content". Hooks read it with [OperationOf]
// (otelfailover records it). [OpenAI]'s methods and [Transport] name the
// operation of their calls themselves when ctx names none.
func WithOperation(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, operationKey{}, name)
}

// OperationOf returns the operation ctx names, or "".
func OperationOf(ctx context.Context) string {
	name, _ := ctx.Value(operationKey{}).(string)
	return name
}

// The operations the glue names (gen_ai.operation.name's values).
const (
	opChat       = "chat"
	opCompletion = "text_completion"
	opEmbeddings = "embeddings"
	opGenerate   = "generate_content"
)

// named returns ctx naming op when the pool has hooks to read it and ctx
// names no operation yet: a pool without hooks allocates nothing for it.
func (p *Pool[C]) named(ctx context.Context, op string) context.Context {
	if p == nil || ctx == nil || op == "" {
		return ctx
	}
	h := &p.set.hooks
	if (h.Call == nil && h.Attempt == nil && h.Usage == nil && h.Skip == nil) || OperationOf(ctx) != "" {
		return ctx
	}
	return WithOperation(ctx, op)
}

// operationOfPath names the operation of a request Transport sends, by
// its path: OpenAI's chat completions and Responses and Anthropic's
// messages are "chat", Gemini's generateContent "generate_content".
func operationOfPath(path string) string {
	switch {
	case strings.HasSuffix(path, "/chat/completions"), strings.HasSuffix(path, "/responses"), strings.HasSuffix(path, "/messages"):
		return opChat
	case strings.HasSuffix(path, "/completions"):
		return opCompletion
	case strings.HasSuffix(path, "/embeddings"), strings.HasSuffix(path, ":embedContent"), strings.HasSuffix(path, ":batchEmbedContents"):
		return opEmbeddings
	case strings.HasSuffix(path, ":generateContent"), strings.HasSuffix(path, ":streamGenerateContent"):
		return opGenerate
	}
	return ""
}
