// Command quickstart runs failover with a real go-openai client against a
// fake OpenAI-compatible provider in this process: no network, no keys.
//
// Three members: a revoked free key, a free key that hits its rate limit
// (429 with Retry-After) and a paid key on another model. It sends chat and
// stream calls, prints who served each one, and the final status table.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	// The fake provider: one script per key.
	srv := failovertest.NewServer()
	srv.Script("sk-free-revoked", failovertest.Unauthorized())
	srv.Script("sk-free-limited",
		failovertest.OK("hi from the free key"),
		failovertest.RateLimited(2*time.Second), // second call: 429, Retry-After: 2
		failovertest.OK("hi again from the free key"))
	paidStream := failovertest.Stream("streamed ", "by ", "the ", "paid ", "key")
	srv.Script("sk-paid", failovertest.OK("hi from the paid key"), failovertest.OK("hi from the paid key"), paidStream, failovertest.OK("hi from the paid key"))

	// The pool: two free keys first, the paid key on a cheaper model after.
	members := failover.OpenAIKeys("free", srv.Config, "sk-free-revoked", "sk-free-limited")
	paid := failover.OpenAIMember("paid", srv.Config("sk-paid"))
	paid.Priority, paid.Model = 1, "gpt-4o-mini"
	// Short transient cooldowns so the demo recovers in seconds: the
	// Retry-After of 2 s is then the floor that decides.
	cooldowns := failover.DefaultCooldowns()
	cooldowns.Transient.Base = time.Second
	pool, err := failover.New(append(members, paid),
		failover.WithCooldowns(cooldowns),
		failover.WithObserver(func(e failover.Event) {
			if e.Kind != failover.EventAttemptFailed {
				fmt.Printf("      %s: %s %s\n", e.Member, e.Kind, e.Reason)
			}
		}))
	if err != nil {
		return err
	}
	client := failover.NewOpenAI(pool, failover.WithFirstChunkTimeout(30*time.Second))

	ctx := context.Background()
	req := openai.ChatCompletionRequest{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hi"}},
	}
	for i := 1; i <= 3; i++ {
		resp, err := client.CreateChatCompletion(ctx, req)
		if err != nil {
			return err
		}
		fmt.Printf("chat %d   %q\n", i, resp.Choices[0].Message.Content)
	}

	stream, err := client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return err
	}
	var text strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	_ = stream.Close()
	fmt.Printf("stream   %q (served by %s)\n", text.String(), stream.Member())

	fmt.Println("         (waiting 2 s for the free key's Retry-After)")
	time.Sleep(2100 * time.Millisecond)
	resp, err := client.CreateChatCompletion(ctx, req)
	if err != nil {
		return err
	}
	fmt.Printf("chat 4   %q\n", resp.Choices[0].Message.Content)

	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tMODEL\tSTATE\tREASON\tREQUESTS\tFAILURES\tLAST ERROR")
	for _, s := range pool.Status() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%.60s\n", s.Name, s.Model, s.State, s.Reason, s.Requests, s.Failures, s.LastError)
	}
	_ = w.Flush()
	fmt.Printf("\nupstream calls per key: revoked=%d limited=%d paid=%d\n",
		srv.Calls("sk-free-revoked"), srv.Calls("sk-free-limited"), srv.Calls("sk-paid"))

	// The same status, as an admin endpoint would serve it.
	rec := &jsonRecorder{header: http.Header{}}
	failover.StatusHandler(pool).ServeHTTP(rec, &http.Request{Method: http.MethodGet})
	fmt.Printf("status JSON: %d bytes\n", rec.n)
	return nil
}

// jsonRecorder counts what the status handler writes.
type jsonRecorder struct {
	header http.Header
	n      int
}

func (r *jsonRecorder) Header() http.Header         { return r.header }
func (r *jsonRecorder) WriteHeader(int)             {}
func (r *jsonRecorder) Write(b []byte) (int, error) { r.n += len(b); return len(b), nil }
