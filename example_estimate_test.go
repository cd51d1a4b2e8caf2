package failover_test

import (
	"fmt"

	"github.com/llmfailover/failover"
)

// EstimateBodyTokens sizes a JSON request body as Transport does, for
// [failover.Tokens] in a hand-written Do call.
func ExampleEstimateBodyTokens() {
	body := []byte(`{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Answer in one word.",
		"messages":[{"role":"user","content":"What colour is the sky?"}]}`)
	fmt.Println(failover.EstimateBodyTokens("/v1/messages", body))
	// Output: 1039
}
