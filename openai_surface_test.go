package failover_test

import (
	"context"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tableRow is a row of the README's go-openai method table.
var tableRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Za-z]*)` \\| (fails over|pinned|not offered) \\| (.+) \\|$")

// The README's method table lists each method of *openai.Client once, and
// each "fails over" method is a method of *failover.OpenAI with
// go-openai's parameters (and results, but for the stream types).
func TestREADMEMethodTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	rows := map[string]string{}
	for _, m := range tableRow.FindAllStringSubmatch(string(b), -1) {
		_, dup := rows[m[1]]
		require.False(t, dup, "%s is listed twice", m[1])
		require.NotEmpty(t, strings.TrimSpace(m[3]), "%s has no reason", m[1])
		rows[m[1]] = m[2]
	}
	upstream := reflect.TypeFor[*openai.Client]()
	var want []string
	for i := range upstream.NumMethod() {
		want = append(want, upstream.Method(i).Name)
	}
	var got []string
	for name := range rows {
		got = append(got, name)
	}
	slices.Sort(got)
	assert.Equal(t, want, got, "the table lists exactly the methods of *openai.Client")
	assert.Len(t, want, 91, "go-openai v1.43.0")

	ours := reflect.TypeFor[*failover.OpenAI]()
	streams := map[reflect.Type]bool{
		reflect.TypeFor[*failover.ChatStream](): true, reflect.TypeFor[*failover.CompletionStream](): true,
		reflect.TypeFor[*failover.ResponseStream](): true,
	}
	for name, verdict := range rows {
		m, ok := ours.MethodByName(name)
		if verdict != "fails over" {
			assert.False(t, ok, "%s is %s, yet *OpenAI has it", name, verdict)
			continue
		}
		require.True(t, ok, "%s fails over, yet *OpenAI lacks it", name)
		u, _ := upstream.MethodByName(name)
		mt, ut := m.Type, u.Type
		require.Equal(t, ut.NumIn(), mt.NumIn(), name)
		for i := 1; i < ut.NumIn(); i++ {
			assert.Equal(t, ut.In(i), mt.In(i), "%s parameter %d", name, i)
		}
		require.Equal(t, ut.NumOut(), mt.NumOut(), name)
		for i := range ut.NumOut() {
			if !streams[mt.Out(i)] {
				assert.Equal(t, ut.Out(i), mt.Out(i), "%s result %d", name, i)
			}
		}
	}
}

// The README's swap interface: both clients satisfy it, and each stream
// of *OpenAI has the methods of go-openai's.
func TestSwapInterface(t *testing.T) {
	type LLM interface {
		CreateChatCompletion(context.Context, openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error)
		CreateCompletion(context.Context, openai.CompletionRequest) (openai.CompletionResponse, error)
		CreateEmbeddings(context.Context, openai.EmbeddingRequestConverter) (openai.EmbeddingResponse, error)
		CreateResponse(context.Context, openai.CreateResponseRequest) (openai.CreateResponseResponse, error)
		CreateImage(context.Context, openai.ImageRequest) (openai.ImageResponse, error)
		CreateSpeech(context.Context, openai.CreateSpeechRequest) (openai.RawResponse, error)
		CreateTranscription(context.Context, openai.AudioRequest) (openai.AudioResponse, error)
		Moderations(context.Context, openai.ModerationRequest) (openai.ModerationResponse, error)
		ListModels(context.Context) (openai.ModelsList, error)
		GetModel(context.Context, string) (openai.Model, error)
	}
	type stream[E any] interface {
		Recv() (E, error)
		RecvRaw() ([]byte, error)
		Close() error
		GetRateLimitHeaders() openai.RateLimitHeaders
	}
	var (
		_ LLM                                         = (*openai.Client)(nil)
		_ LLM                                         = (*failover.OpenAI)(nil)
		_ stream[openai.ChatCompletionStreamResponse] = (*openai.ChatCompletionStream)(nil)
		_ stream[openai.ChatCompletionStreamResponse] = (*failover.ChatStream)(nil)
		_ stream[openai.CompletionResponse]           = (*openai.CompletionStream)(nil)
		_ stream[openai.CompletionResponse]           = (*failover.CompletionStream)(nil)
		_ stream[openai.ResponseStreamEvent]          = (*openai.ResponseStream)(nil)
		_ stream[openai.ResponseStreamEvent]          = (*failover.ResponseStream)(nil)
	)
}
