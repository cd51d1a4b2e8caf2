package failover_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/llmfailover/failover"
)

// A body whose other fields have unexpected types still gives its retry
// hint (regression: the envelope decoded all or nothing): a string
// "error" (xAI, FastAPI servers) does not hide a top-level retry_after,
// nor odd neighbours an error's retry_after or Google's RetryInfo.
func TestRetryHintFromPartlyTypedBody(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{"error":"Rate limit exceeded","retry_after":20}`:                   20 * time.Second,
		`{"error":"Rate limit exceeded","retry_after":"30s"}`:                30 * time.Second,
		`{"error":"Rate limit exceeded","retry_after":"12"}`:                 12 * time.Second,
		`{"error":{"message":"slow down","retry_after":7,"details":"none"}}`: 7 * time.Second,
		`{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}],"metadata":"x"}}`: 37 * time.Second,
	} {
		v := failover.Classify(&failover.HTTPError{StatusCode: 429, Body: []byte(body)})
		assert.Equal(t, failover.ReasonRateLimit, v.Reason, body)
		assert.Equal(t, want, v.RetryAfter, body)
	}
}
