package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/sashabaranov/go-openai"
)

// Every replica of a service creates one store on the shared Redis and
// gives it to its pools. A key any replica finds revoked or rate limited is
// skipped by all of them; RPM limits count every replica's calls.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := redisstore.New(rdb)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	pool, err := failover.New([]failover.Member[*openai.Client]{
		{Name: "free", Client: openai.NewClient("sk-free"), Limits: failover.Limits{RPM: 60}},
		{Name: "paid", Client: openai.NewClient("sk-paid"), Priority: 1},
	}, failover.WithStore(store))
	if err != nil {
		panic(err)
	}
	resp, err := failover.NewOpenAI(pool).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Hello"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Choices[0].Message.Content)
}

// A service that wants go-redis's own lines (its dial errors while Redis
// is down) in its structured log, redacted, says so once at start-up,
// before it creates any go-redis client. SetGoRedisLogger(nil) drops them.
func ExampleSetGoRedisLogger() {
	redisstore.SetGoRedisLogger(slog.Default())

	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := redisstore.New(rdb)
	if err != nil {
		panic(err)
	}
	defer store.Close()
}
