package failover

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// usageScan reads the same counts whatever the reads' sizes, only from a
// "usage" object's own top level, never from strings.
func TestUsageScanSplits(t *testing.T) {
	doc := `{"model":"gpt-4o-2024-08-06","content":"x \"usage\":{\"prompt_tokens\":9}","usage" : {"prompt_tokens_details":{"cached_tokens":3},"prompt_tokens": 120,"completion_tokens":45},"tail":[1,{"a":"}"}]}`
	for size := 1; size <= len(doc); size++ {
		var s usageScan
		for i := 0; i < len(doc); i += size {
			s.feed([]byte(doc[i:min(i+size, len(doc))]))
		}
		p, c, ok := s.counts()
		assert.True(t, ok)
		assert.Equal(t, [2]int{120, 45}, [2]int{p, c}, "reads of %d bytes", size)
		assert.True(t, s.docEnded)
		assert.Equal(t, "gpt-4o-2024-08-06", s.modelName(), "reads of %d bytes", size)
	}
	_, ok := scanUsage([]byte(`{"usage":null,"type":"response.created"}`))
	assert.False(t, ok)
}

// The model a response names, in each provider's shape; a "model" deeper
// down, in a string, escaped or too long is not taken.
func TestUsageScanModel(t *testing.T) {
	long := strings.Repeat("m", maxModel+1)
	for _, tc := range []struct{ name, doc, model string }{
		{"openai chat", `{"id":"x","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}`, "gpt-4o-mini-2024-07-18"},
		{"openai chunk", `{"id":"x","choices":[],"model":"gpt-4o","usage":{"prompt_tokens":3,"completion_tokens":4}}`, "gpt-4o"},
		{"anthropic message_start", `{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":3,"output_tokens":1}}}`, "claude-sonnet-4-5-20250929"},
		{"gemini", `{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4},"modelVersion":"gemini-2.5-flash"}`, "gemini-2.5-flash"},
		{"responses completed", `{"type":"response.completed","response":{"id":"r","model":"gpt-4.1","usage":{"input_tokens":3,"output_tokens":4}}}`, "gpt-4.1"},
		{"deep model ignored", `{"choices":[{"message":{"model":"nested"}}],"usage":{"prompt_tokens":3}}`, ""},
		{"model in a string", `{"content":"\"model\":\"fake\"","usage":{"prompt_tokens":3}}`, ""},
		{"escaped model", `{"model":"gpt\u002d4o","usage":{"prompt_tokens":3}}`, ""},
		{"too long", `{"model":"` + long + `","usage":{"prompt_tokens":3}}`, ""},
		{"model not a string", `{"model":7,"usage":{"prompt_tokens":3}}`, ""},
	} {
		u, ok := scanUsage([]byte(tc.doc))
		assert.True(t, ok, tc.name)
		assert.Equal(t, tc.model, u.Model, tc.name)
		assert.Equal(t, 3, u.PromptTokens, tc.name)
	}
}
