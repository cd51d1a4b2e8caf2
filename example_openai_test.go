package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
)

// OpenAIMember wraps a go-openai configuration: OpenAI, Azure or any
// OpenAI-compatible base URL. Here the "provider" is a fake in memory.
func ExampleOpenAIMember() {
	srv := failovertest.NewServer()
	srv.Script("sk-primary", failovertest.RateLimited(30*time.Second)) // 429, Retry-After: 30
	primary := failover.OpenAIMember("primary", srv.Config("sk-primary"))
	backup := failover.OpenAIMember("openrouter", srv.Config("sk-or-backup"))
	backup.Priority, backup.Model = 1, "openai/gpt-4o-mini"

	pool, _ := failover.New([]failover.Member[*openai.Client]{primary, backup})
	client := failover.NewOpenAI(pool)
	_, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
	})
	fmt.Println(err)
	for _, r := range srv.Requests("") {
		fmt.Println(r.Model)
	}
	// Output:
	// <nil>
	// gpt-4o
	// openai/gpt-4o-mini
}

// NewOpenAI is a drop-in for *openai.Client's common calls. OpenAIKeys gives
// each key of one provider its own member and cooldown.
func ExampleNewOpenAI() {
	srv := failovertest.NewServer()
	srv.Script("key-1", failovertest.Unauthorized())
	pool, err := failover.New(failover.OpenAIKeys("openai", srv.Config, "key-1", "key-2", "key-3"))
	if err != nil {
		panic(err)
	}
	client := failover.NewOpenAI(pool)
	for range 3 {
		resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
		})
		fmt.Println(resp.Choices[0].Message.Content, err)
	}
	fmt.Println("calls:", srv.Calls("key-1"), srv.Calls("key-2"), srv.Calls("key-3"))
	// Output:
	// ok <nil>
	// ok <nil>
	// ok <nil>
	// calls: 1 3 0
}

// A stream fails over until its first chunk arrives; after that the caller
// reads it as from go-openai.
func ExampleOpenAI_CreateChatCompletionStream() {
	srv := failovertest.NewServer()
	srv.Script("key-1", failovertest.Error(503, "server_error", "", "overloaded"))
	srv.Script("key-2", failovertest.Stream("Hel", "lo"))
	pool, _ := failover.New(failover.OpenAIKeys("openai", srv.Config, "key-1", "key-2"))
	client := failover.NewOpenAI(pool)

	stream, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
	})
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Print(chunk.Choices[0].Delta.Content)
	}
	fmt.Println(" from", stream.Member())
	// Output: Hello from openai#2
}
