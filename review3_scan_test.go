package failover_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llmfailover/failover"
)

type review3CountReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c review3CountReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// requestModel now reads a GetBody body until its top-level "model", with
// no bound: a body that names none (a multipart audio upload, whose model
// is a form field the JSON scan never takes) is read and scanned whole, an
// extra full read before every call (GetBody has no MaxReplayBody limit, so
// a file-backed body of any size). The old scan stopped at 64 KiB.
func TestReview3RequestModelScanIsBounded(t *testing.T) {
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		return answer(r, 200, `{"text":"hi"}`), nil
	})
	p := upstreamPool(t, nil, up) // a member with no Model: the pool passes models through
	tr := failover.NewTransport(p)
	payload := bytes.Repeat([]byte("\x00\x01binary-audio{["), 40<<20/16)
	var reads []*atomic.Int64
	req, err := http.NewRequest(http.MethodPost, "http://x/v1/audio/transcriptions", bytes.NewReader(payload))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	req.GetBody = func() (io.ReadCloser, error) {
		n := &atomic.Int64{}
		reads = append(reads, n)
		return io.NopCloser(review3CountReader{bytes.NewReader(payload), n}), nil
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotEmpty(t, reads)
	if len(reads) == 2 { // a copy for the model scan, one for the attempt
		assert.LessOrEqual(t, reads[0].Load(), int64(1<<20), "the model scan reads a bounded head of a body that names no model")
	}
}
