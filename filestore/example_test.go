package filestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/llmfailover/failover/filestore"
	"github.com/sashabaranov/go-openai"
)

// A CLI keeps what its pool learns in a file. Each run is a new process:
// it opens the store, makes its call and closes the store. The first run
// finds that a key is revoked; the next runs skip that key without calling
// it.
func Example() {
	dir, err := os.MkdirTemp("", "filestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "failover.json") // e.g. under os.UserCacheDir()

	srv := failovertest.NewServer() // a fake provider
	srv.Script("sk-revoked", failovertest.Unauthorized())

	run := func() error {
		store, err := filestore.Open(path)
		if err != nil {
			return err // errors.Is(err, filestore.ErrFormat): not a filestore file
		}
		defer store.Close() // writes what the run learned
		pool, err := failover.New(failover.OpenAIKeys("key", srv.Config, "sk-revoked", "sk-good"), failover.WithStore(store))
		if err != nil {
			return err
		}
		_, err = failover.NewOpenAI(pool).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
			Model:    openai.GPT4oMini,
			Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Hello"}},
		})
		return err
	}
	for i := 1; i <= 3; i++ {
		if err := run(); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("run %d: calls to the revoked key so far: %d, to the good key: %d\n", i, srv.Calls("sk-revoked"), srv.Calls("sk-good"))
	}
	// Output:
	// run 1: calls to the revoked key so far: 1, to the good key: 1
	// run 2: calls to the revoked key so far: 1, to the good key: 2
	// run 3: calls to the revoked key so far: 1, to the good key: 3
}
