package failovertest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/llmfailover/failover/failovertest"
)

// A Responses stream is framed as OpenAI sends it: an "event:" line naming
// each event, and no "data: [DONE]" after response.completed; with NoDone
// the stream is cut before response.completed.
func TestResponsesStreamWire(t *testing.T) {
	srv := failovertest.NewServer()
	cut := failovertest.Response{Chunks: failovertest.ResponseEvents("m", "a"), NoDone: true}
	srv.Script("k", failovertest.Response{Chunks: failovertest.ResponseEvents("m", "a", "b")}, cut)
	read := func() string {
		status, h, body := do(t, srv, http.MethodPost, "http://fake.test/v1/responses",
			http.Header{"Authorization": {"Bearer k"}}, `{"model":"m","input":"hi","stream":true}`)
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "text/event-stream", h.Get("Content-Type"))
		return body
	}
	full := read()
	assert.Equal(t, 4, strings.Count(full, "\nevent: ")+boolInt(strings.HasPrefix(full, "event: ")), full)
	assert.True(t, strings.HasPrefix(full, "event: response.created\ndata: {"), full)
	assert.Contains(t, full, "event: response.output_text.delta\ndata: ")
	assert.True(t, strings.HasSuffix(full, "\n\n") && strings.Contains(full, "event: response.completed\ndata: "), full)
	assert.NotContains(t, full, "[DONE]")
	cutBody := read()
	assert.NotContains(t, cutBody, "response.completed")
	assert.NotContains(t, cutBody, "[DONE]")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
