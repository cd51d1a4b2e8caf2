package failover_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func threeMembers(t *testing.T, srv *failovertest.Server) (*failover.Pool[*openai.Client], *failover.OpenAI) {
	t.Helper()
	ms := failover.OpenAIKeys("m", srv.Config, "k1", "k2", "k3")
	ms[0].Model, ms[1].Model, ms[2].Model = "big", "mini", "mini"
	ms[2].Group = "eu"
	p, err := failover.New(ms, failover.WithCooldowns(exact()))
	require.NoError(t, err)
	return p, failover.NewOpenAI(p)
}

// The escape hatch keeps Retry-After: a hand-written ListFiles call whose
// first key answers 429 with Retry-After: 60 cools that key exactly 60 s.
func TestCallKeepsRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k1", failovertest.RateLimited(60*time.Second))
		p, o := threeMembers(t, srv)
		start := time.Now()
		files, err := failover.Call(context.Background(), o, func(ctx context.Context, c *openai.Client) (openai.FilesList, error) {
			return c.ListFiles(ctx)
		})
		require.NoError(t, err)
		assert.Equal(t, "m#2", files.Header().Get("X-Failover-Member"))
		assert.Equal(t, start.Add(60*time.Second), p.Status()[0].Until)
		assert.Equal(t, []int{1, 1, 0}, []int{srv.Calls("k1"), srv.Calls("k2"), srv.Calls("k3")})

		time.Sleep(59 * time.Second)
		_, err = failover.Call(context.Background(), o, func(ctx context.Context, c *openai.Client) (openai.FilesList, error) {
			return c.ListFiles(ctx)
		})
		require.NoError(t, err)
		assert.Equal(t, 1, srv.Calls("k1"), "still cooling at 59 s")
	})
}

// OnlyMember pins a call: it never moves to another account, and a pinned
// member that cools is ErrUnavailable with no upstream call.
func TestCallOnlyMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := failovertest.NewServer()
		srv.Script("k2", failovertest.RateLimited(30*time.Second))
		_, o := threeMembers(t, srv)
		get := func(ctx context.Context, c *openai.Client) (openai.File, error) { return c.GetFile(ctx, "file-1") }
		_, err := failover.Call(context.Background(), o, get, failover.OnlyMember("m#2"))
		require.Error(t, err)
		_, err = failover.Call(context.Background(), o, get, failover.OnlyMember("m#2"))
		assert.ErrorIs(t, err, failover.ErrUnavailable)
		assert.Equal(t, []int{0, 1, 0}, []int{srv.Calls("k1"), srv.Calls("k2"), srv.Calls("k3")})

		_, err = o.On("nobody")
		assert.ErrorIs(t, err, failover.ErrUnknownMember)
		c, err := o.On("m#3")
		require.NoError(t, err)
		_, err = c.ListFiles(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 1, srv.Calls("k3"))
	})
}

// Call options travel in the context to every method: OnlyModel and
// OnlyGroup choose members, Tokens replaces the estimate.
func TestWithCallOptions(t *testing.T) {
	srv := failovertest.NewServer()
	_, o := threeMembers(t, srv)
	ctx := failover.WithCallOptions(context.Background(), failover.OnlyModel("mini"))
	resp, err := o.CreateChatCompletion(ctx, chatReq)
	require.NoError(t, err)
	assert.Equal(t, "m#2", resp.Header().Get("X-Failover-Member"))

	eu := failover.WithCallOptions(ctx, failover.OnlyGroup("eu"))
	emb, err := o.CreateEmbeddings(eu, openai.EmbeddingRequest{Input: []string{"x"}})
	require.NoError(t, err)
	assert.Equal(t, "m#3", emb.Header().Get("X-Failover-Member"))

	_, err = o.CreateChatCompletion(failover.WithCallOptions(context.Background(), failover.OnlyModel("none")), chatReq)
	assert.ErrorIs(t, err, failover.ErrUnavailable)
	assert.Equal(t, []int{0, 1, 1}, []int{srv.Calls("k1"), srv.Calls("k2"), srv.Calls("k3")})

	// A member whose context is too small for the Tokens in ctx is skipped.
	ms := failover.OpenAIKeys("c", srv.Config, "small", "large")
	ms[0].Limits.ContextTokens = 1000
	p, err := failover.New(ms)
	require.NoError(t, err)
	big := failover.WithCallOptions(context.Background(), failover.Tokens(5000))
	resp, err = failover.NewOpenAI(p).CreateChatCompletion(big, chatReq)
	require.NoError(t, err)
	assert.Equal(t, "c#2", resp.Header().Get("X-Failover-Member"))
	assert.Equal(t, 0, srv.Calls("small"))
}

// A Responses stream cut before response.completed fails over before its
// first event and reads as io.ErrUnexpectedEOF after it; an error event
// first fails over.
func TestResponseStreamTruncation(t *testing.T) {
	srv := failovertest.NewServer()
	events := failovertest.ResponseEvents("m", "a", "b")
	srv.Script("k1", failovertest.Response{Chunks: []string{`{"type":"error","code":"server_error","message":"boom"}`}})
	srv.Script("k2", failovertest.Response{Chunks: events[:2], NoDone: true})
	p, o := threeMembers(t, srv)
	s, err := o.CreateResponseStream(context.Background(), openai.CreateResponseRequest{Input: "hi"})
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "m#2", s.Member())
	assert.Equal(t, "m#2", s.Header().Get("X-Failover-Member"))
	ev, err := s.Recv()
	require.NoError(t, err)
	assert.Equal(t, openai.ResponseStreamEventCreated, ev.Type)
	_, err = s.Recv()
	require.NoError(t, err)
	_, err = s.Recv()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, failover.ReasonServer, p.Status()[0].Reason)
	assert.Equal(t, 1, srv.Calls("k1"))

	// A completion stream cut before [DONE] reads as io.ErrUnexpectedEOF too.
	srv.Script("k1", failovertest.Response{Chunks: []string{`{"choices":[{"text":"a"}]}`}, NoDone: true})
	require.NoError(t, p.Enable("m#1"))
	cs, err := o.CreateCompletionStream(context.Background(), openai.CompletionRequest{Prompt: "hi"})
	require.NoError(t, err)
	defer cs.Close()
	_, err = cs.Recv()
	require.NoError(t, err)
	_, err = cs.Recv()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// A file body larger than MaxFileBody fails before any call.
func TestFileBodyTooLarge(t *testing.T) {
	srv := failovertest.NewServer()
	_, o := threeMembers(t, srv)
	_, err := o.CreateTranscription(context.Background(), openai.AudioRequest{FilePath: "a.mp3",
		Reader: io.LimitReader(zeros{}, failover.MaxFileBody+1)})
	assert.ErrorIs(t, err, failover.ErrInvalid)
	_, err = o.CreateEditImage(context.Background(), openai.ImageEditRequest{Image: failingReader{}})
	assert.Error(t, err)
	assert.Equal(t, 0, srv.Calls("k1")+srv.Calls("k2")+srv.Calls("k3"))
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk gone") }

// Canary keys of odd shape never reach X-Failover-Member or an error.
func TestMethodsRedactCanaryKeys(t *testing.T) {
	srv := failovertest.NewServer()
	canary := "zz-CANARY-7f3e!key"
	srv.Script(canary, failovertest.Error(500, "server_error", "", "upstream saw key "+canary))
	ms := failover.OpenAIKeys("c", srv.Config, canary)
	p, err := failover.New(ms)
	require.NoError(t, err)
	_, err = failover.NewOpenAI(p).CreateImage(context.Background(), openai.ImageRequest{Prompt: "x"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), canary)
	assert.False(t, strings.Contains(p.Status()[0].LastError, canary))
}
