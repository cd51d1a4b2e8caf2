package failover_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// methodCase is one go-openai method family, called through *OpenAI.
type methodCase struct {
	name string
	// call makes the call and returns the response's headers.
	call func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header
	// model is the model the serving member must see (its Model, set on
	// it) and asked the caller's, when the call sends a model.
	model, asked string
	// file is the multipart file field whose bytes must reach both members.
	file string
}

var (
	imagePNG = bytes.Repeat([]byte("\x89PNG-fake-image-"), 1000)
	audioMP3 = bytes.Repeat([]byte("ID3-fake-audio-"), 1000)
)

func methodCases(t *testing.T) []methodCase {
	audioPath := filepath.Join(t.TempDir(), "speech.mp3")
	require.NoError(t, os.WriteFile(audioPath, audioMP3, 0o600))
	return []methodCase{
		{name: "CreateChatCompletion", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			req := chatReq
			req.Model = "asked"
			want := req
			resp, err := o.CreateChatCompletion(ctx, req)
			require.NoError(t, err)
			assert.Equal(t, want, req, "the caller's request is unchanged")
			return resp.Header()
		}},
		{name: "CreateChatCompletionStream", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			req := chatReq
			req.Model = "asked"
			s, err := o.CreateChatCompletionStream(ctx, req)
			require.NoError(t, err)
			defer s.Close()
			raw, err := s.RecvRaw()
			require.NoError(t, err)
			assert.Contains(t, string(raw), `"ok"`)
			_, err = s.Recv()
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, "m#2", s.Member())
			return s.Header()
		}},
		{name: "CreateCompletion", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateCompletion(ctx, openai.CompletionRequest{Model: "asked", Prompt: "hi"})
			require.NoError(t, err)
			return resp.Header()
		}},
		{name: "CreateCompletionStream", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			s, err := o.CreateCompletionStream(ctx, openai.CompletionRequest{Model: "asked", Prompt: "hi"})
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Recv()
			require.NoError(t, err)
			_, err = s.Recv()
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, "m#2", s.Member())
			return s.Header()
		}},
		{name: "CreateEmbeddings", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: "asked", Input: []string{"hi"}})
			require.NoError(t, err)
			return resp.Header()
		}},
		{name: "CreateResponse", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateResponse(ctx, openai.CreateResponseRequest{Model: "asked", Input: "hi"})
			require.NoError(t, err)
			assert.Equal(t, "served", resp.Model)
			return resp.Header()
		}},
		{name: "CreateResponseStream", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			s, err := o.CreateResponseStream(ctx, openai.CreateResponseRequest{Model: "asked", Input: "hi"})
			require.NoError(t, err)
			defer s.Close()
			var types []openai.ResponseStreamEventType
			for {
				ev, err := s.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				types = append(types, ev.Type)
			}
			assert.Equal(t, []openai.ResponseStreamEventType{openai.ResponseStreamEventCreated,
				openai.ResponseStreamEventOutputTextDelta, openai.ResponseStreamEventCompleted}, types)
			return s.Header()
		}},
		{name: "CreateImage", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateImage(ctx, openai.ImageRequest{Model: "asked", Prompt: "a cat"})
			require.NoError(t, err)
			require.Len(t, resp.Data, 1)
			return resp.Header()
		}},
		{name: "CreateEditImage", model: "served", file: "image", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			img := bytes.NewReader(imagePNG)
			req := openai.ImageEditRequest{Model: "asked", Prompt: "a hat", Image: img}
			resp, err := o.CreateEditImage(ctx, req)
			require.NoError(t, err)
			assert.Equal(t, "asked", req.Model)
			assert.Same(t, img, req.Image, "the caller's request is unchanged")
			return resp.Header()
		}},
		// go-openai v1.43 sends no model with a variation (only in an
		// Azure deployment's URL): nothing to see rewritten.
		{name: "CreateVariImage", file: "image", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateVariImage(ctx, openai.ImageVariRequest{Model: "asked", Image: bytes.NewReader(imagePNG)})
			require.NoError(t, err)
			return resp.Header()
		}},
		{name: "CreateSpeech", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateSpeech(ctx, openai.CreateSpeechRequest{Model: "asked", Input: "hi", Voice: openai.VoiceAlloy})
			require.NoError(t, err)
			defer resp.Close()
			b, err := io.ReadAll(resp)
			require.NoError(t, err)
			assert.Equal(t, "fake-audio:served", string(b))
			return resp.Header()
		}},
		{name: "CreateTranscription", model: "served", file: "file", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			req := openai.AudioRequest{Model: "asked", FilePath: "speech.mp3", Reader: bytes.NewReader(audioMP3)}
			resp, err := o.CreateTranscription(ctx, req)
			require.NoError(t, err)
			assert.Equal(t, "ok", resp.Text)
			assert.Equal(t, "asked", req.Model)
			return resp.Header()
		}},
		{name: "CreateTranslation", model: "served", file: "file", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.CreateTranslation(ctx, openai.AudioRequest{Model: "asked", FilePath: audioPath})
			require.NoError(t, err)
			return resp.Header()
		}},
		{name: "Moderations", model: openai.ModerationOmniLatest, asked: openai.ModerationTextLatest, call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.Moderations(ctx, openai.ModerationRequest{Model: openai.ModerationTextLatest, Input: "hi"})
			require.NoError(t, err)
			return resp.Header()
		}},
		{name: "ListModels", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.ListModels(ctx)
			require.NoError(t, err)
			require.Len(t, resp.Models, 2)
			return resp.Header()
		}},
		{name: "GetModel", model: "served", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := o.GetModel(ctx, "asked")
			require.NoError(t, err)
			assert.Equal(t, "served", resp.ID)
			return resp.Header()
		}},
		{name: "Call(ListFiles)", call: func(t *testing.T, ctx context.Context, o *failover.OpenAI) http.Header {
			resp, err := failover.Call(ctx, o, func(ctx context.Context, c *openai.Client) (openai.FilesList, error) {
				return c.ListFiles(ctx)
			})
			require.NoError(t, err)
			return resp.Header()
		}},
	}
}

// Every method family, through a real go-openai client: the first key's
// 429 with Retry-After: 60 is skipped and cools it exactly 60 s, the
// second member serves with its own model, and X-Failover-Member names it.
// A file body reaches both members byte for byte.
func TestOpenAIMethodsFailOver(t *testing.T) {
	for _, tc := range methodCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := failovertest.NewServer()
				srv.SetModels("served", "other")
				srv.Script("k-429", failovertest.RateLimited(60*time.Second))
				ms := failover.OpenAIKeys("m", srv.Config, "k-429", "k-ok")
				if tc.model != "" {
					ms[1].Model = tc.model
				}
				if tc.asked == "" {
					tc.asked = "asked"
				}
				p, err := failover.New(ms, failover.WithCooldowns(exact()))
				require.NoError(t, err)
				o := failover.NewOpenAI(p)
				start := time.Now()

				h := tc.call(t, context.Background(), o)

				assert.Equal(t, "m#2", h.Get("X-Failover-Member"))
				assert.Equal(t, 1, srv.Calls("k-429"))
				assert.Equal(t, 1, srv.Calls("k-ok"))
				st := p.Status()
				assert.Equal(t, failover.ReasonRateLimit, st[0].Reason)
				assert.Equal(t, start.Add(60*time.Second), st[0].Until, "Retry-After: 60 honoured")
				served := srv.Requests("k-ok")[0]
				if tc.model != "" {
					assert.Equal(t, tc.model, served.Model)
					assert.Equal(t, tc.asked, srv.Requests("k-429")[0].Model, "the first member sends the caller's model")
				}
				if tc.file != "" {
					first, ok1 := failovertest.FormFile(srv.Requests("k-429")[0], tc.file)
					second, ok2 := failovertest.FormFile(served, tc.file)
					require.True(t, ok1 && ok2, "both members got a file")
					assert.Equal(t, first, second, "the file replayed byte for byte")
					assert.NotEmpty(t, second)
				}
				for _, v := range h.Values("X-Failover-Member") {
					assert.NotContains(t, v, "k-")
				}
			})
		})
	}
}
