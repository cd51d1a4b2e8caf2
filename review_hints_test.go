package failover_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/llmfailover/failover"
)

// Regression (found by review): parseEnvelope keeps partial decodes only for *json.UnmarshalTypeError.
// A retry_after that is a string but not a number ("30s") makes json.Number
// fail with a plain error, which aborts the decode: the RetryInfo beside it
// is lost, the very case 6dd8e77 says it fixed.
func TestReviewRetryHintBesideNonNumericRetryAfter(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{"error":{"retry_after":"soon","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`: 37 * time.Second,
		`{"retry_after":"30s","error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`:  37 * time.Second,
	} {
		v := failover.Classify(&failover.HTTPError{StatusCode: 429, Body: []byte(body)})
		assert.Equal(t, want, v.RetryAfter, body)
	}
}
