package failover_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/sashabaranov/go-openai/jsonschema"
	"github.com/stretchr/testify/assert"
)

var weatherSchema = jsonschema.Definition{
	Type: jsonschema.Object,
	Properties: map[string]jsonschema.Definition{
		"location": {Type: jsonschema.String, Description: "The city and state, e.g. San Francisco, CA"},
		"unit":     {Type: jsonschema.String, Enum: []string{"celsius", "fahrenheit"}},
	},
	Required: []string{"location"},
}

// The go-openai estimates count tool and function schemas, response_format
// schemas, image parts and Responses input items, whatever form the
// schema takes.
func TestEstimateTokensCountsWhatProvidersCount(t *testing.T) {
	base := openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "What is the weather in Paris?"}}}
	plain := failover.EstimateTokens(base)
	assert.Equal(t, 4+8, plain, "29 bytes and a message")

	raw, _ := json.Marshal(&weatherSchema)
	var asMap map[string]any
	_ = json.Unmarshal(raw, &asMap)
	var counts []int
	for _, params := range []any{weatherSchema, &weatherSchema, json.RawMessage(raw), raw, string(raw), asMap} {
		r := base
		r.Tools = []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: "get_weather", Description: "Get the current weather", Parameters: params}}}
		counts = append(counts, failover.EstimateTokens(r)-plain)
	}
	for _, c := range counts {
		assert.InDelta(t, counts[0], c, 2, "every form of one schema counts alike: %v", counts)
	}
	assert.Greater(t, counts[0], 30, "the tool counts")

	r := base
	//lint:ignore SA1019 the deprecated field still counts
	r.Functions = []openai.FunctionDefinition{{Name: "get_weather", Parameters: &weatherSchema}}
	assert.Greater(t, failover.EstimateTokens(r), plain+25)

	r = base
	r.ResponseFormat = &openai.ChatCompletionResponseFormat{Type: openai.ChatCompletionResponseFormatTypeJSONSchema,
		JSONSchema: &openai.ChatCompletionResponseFormatJSONSchema{Name: "weather", Schema: &weatherSchema}}
	assert.Greater(t, failover.EstimateTokens(r), plain+25)

	r = base
	r.Messages = []openai.ChatCompletionMessage{{Role: "user", MultiContent: []openai.ChatMessagePart{
		{Type: openai.ChatMessagePartTypeText, Text: "What is this?"},
		{Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: "data:image/png;base64," + strings.Repeat("A", 100000)}},
		{Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: "https://x/y.png", Detail: openai.ImageURLDetailLow}},
	}}}
	assert.Equal(t, 4+4+failover.ImageTokens+failover.LowDetailImageTokens, failover.EstimateTokens(r), "images by the figure, not their bytes")

	resp := openai.CreateResponseRequest{Instructions: "Be brief.", MaxOutputTokens: 100, Input: []any{
		openai.ResponseInputMessage{Role: "user", Content: []any{
			openai.ResponseInputText{Type: "input_text", Text: "What is the weather in Paris?"},
			openai.ResponseInputImage{Type: "input_image", ImageURL: "data:image/png;base64,AAAA"},
		}},
		map[string]any{"type": "function_call_output", "call_id": "c1", "output": "sunny"},
	}, Tools: []openai.Tool{openai.NewResponseFunctionTool(openai.FunctionDefinition{Name: "get_weather", Parameters: weatherSchema})}}
	n := failover.EstimateResponseTokens(resp)
	assert.Greater(t, n, 100+failover.ImageTokens+8+30)
	assert.Less(t, n, 100+failover.ImageTokens+8+100)
	assert.Equal(t, 3+4, failover.EstimateResponseTokens(openai.CreateResponseRequest{Input: "Hello there!", MaxOutputTokens: 4}))
}

// The body estimate reads each protocol's JSON: the same prompt estimates
// alike in each, images count by the figure, base64 data not at all.
func TestEstimateBodyTokens(t *testing.T) {
	text := strings.Repeat("word ", 4000) // 20,000 bytes
	img := strings.Repeat("iVBORw0KGgo", 10000)
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"` + text + `"}],"max_tokens":50}`, 5000 + 4 + 50},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text","text":"` + text + `"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + img + `","detail":"low"}}]}]}`, 5000 + 4 + 85},
		{"/v1/completions", `{"prompt":"` + text + `","max_tokens":7}`, 5000 + 7},
		{"/v1/completions", `{"prompt":[1,2,3,4]}`, 4},
		{"/v1/embeddings", `{"input":["` + text + `"]}`, 5000},
		{"/v1/responses", `{"instructions":"` + text + `","input":[{"type":"input_image","image_url":"data:image/png;base64,` + img + `"}],"max_output_tokens":10}`, 5000 + 4 + 765 + 10},
		{"/v1/messages", `{"model":"m","max_tokens":1024,"system":"` + text + `","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + img + `"}}]}]}`, 5000 + 4 + 765 + 1024},
		{"/v1beta/models/m:generateContent", `{"contents":[{"role":"user","parts":[{"text":"` + text + `"},{"inlineData":{"mimeType":"image/png","data":"` + img + `"}}]}],"generationConfig":{"maxOutputTokens":256,"temperature":0.2}}`, 5000 + 4 + 765 + 256},
		{"/v1/models", `{"messages":[{"content":"` + text + `"}]}`, 0},
		{"/v1/chat/completions", `not json`, 0},
		{"/v1/chat/completions", `{"messages":[{"content":"` + text[:400], 4 + 100}, // cut: what was read
	} {
		assert.Equal(t, tc.want, failover.EstimateBodyTokens(tc.path, []byte(tc.body)), "%s %.60s", tc.path, tc.body)
	}
	// Tools and schemas count by their keys and string values.
	tools := `{"messages":[],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]}`
	assert.Equal(t, 4+(len("typefunctionfunctionnameget_weatherparameterstypeobjectpropertieslocationtypestring")+3)/4, failover.EstimateBodyTokens("/v1/chat/completions", []byte(tools)))
	schema := `{"contents":[],"generationConfig":{"responseSchema":{"type":"OBJECT","properties":{"a":{"type":"STRING"}}}}}`
	assert.Equal(t, (len("typeOBJECTpropertiesatypeSTRING")+3)/4, failover.EstimateBodyTokens("/v1beta/models/m:generateContent", []byte(schema)))
}

func TestEstimateBodyTokensAllocatesNothing(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"max_tokens":10}`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = failover.EstimateBodyTokens("/v1/chat/completions", body) }))
	req := openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
		Tools: []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "f", Parameters: &weatherSchema}}}}
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = failover.EstimateTokens(req) }))
}

func FuzzEstimateBodyTokens(f *testing.F) {
	f.Add("/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}`)
	f.Add("/v1beta/models/m:generateContent", `{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA"}}]}]}`)
	f.Add("/v1/messages", `{"system":[{"type":"text","text":"x"}],"messages":[[[[[`)
	f.Fuzz(func(t *testing.T, path, body string) {
		if n := failover.EstimateBodyTokens(path, []byte(body)); n < 0 {
			t.Fatalf("negative estimate %d", n)
		}
	})
}
