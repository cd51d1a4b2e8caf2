package failover

import (
	"github.com/sashabaranov/go-openai"
)

// EstimateTokens is a cheap estimate of a chat request's tokens, for
// Limits.TPM, Limits.TPD and Limits.ContextTokens: a token for every four
// bytes of text (message contents, text parts, tool calls and names), four
// tokens of overhead a message, plus the output the request reserves
// (MaxCompletionTokens, else MaxTokens). It errs on the high side for
// English and on the low side for some scripts; pass your own count with
// [Tokens] when it matters. [OpenAI] uses it for every chat call.
func EstimateTokens(req openai.ChatCompletionRequest) int {
	n := 0
	for _, m := range req.Messages {
		b := len(m.Content) + len(m.Name) + len(m.ReasoningContent)
		for _, p := range m.MultiContent {
			b += len(p.Text)
		}
		for _, tc := range m.ToolCalls {
			b += len(tc.Function.Name) + len(tc.Function.Arguments)
		}
		n += 4 + (b+3)/4
	}
	out := req.MaxCompletionTokens
	if out == 0 {
		//lint:ignore SA1019 older callers still set the deprecated field
		out = req.MaxTokens
	}
	return n + out
}

// estimateCompletion estimates a completion request the same way.
func estimateCompletion(req openai.CompletionRequest) int {
	b := 0
	switch p := req.Prompt.(type) {
	case string:
		b = len(p)
	case []string:
		for _, s := range p {
			b += len(s)
		}
	}
	return (b+3)/4 + req.MaxTokens
}
