package filestore

import (
	"errors"
	"testing"
)

// FuzzDecode: any content is a document or an ErrFormat, never a panic;
// a document that decode accepts is written and read back alike.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("hello"))
	f.Add([]byte(`{"format":"github.com/llmfailover/failover/filestore","version":1,"counter":3,` +
		`"members":{"free":{"state":"disabled","lane":"permanent","reason":"auth","version":3}},` +
		`"leases":{"free":{"holder":"h","until":"2026-01-01T00:00:00Z"}},` +
		`"limits":{"free":{"starts":[3,1,2],"tokens":[[2,5],[1,4]],"days":[{"end":"2026-01-02T00:00:00Z","requests":2,"tokens":9}]}}}`))
	f.Add([]byte(`{"format":"github.com/llmfailover/failover/filestore","version":1,"counter":1,"members":{"x":null}}`))
	f.Add([]byte(`{"format":"github.com/llmfailover/failover/filestore","version":1,"limits":{"x":{"tokens":[[1,-1]]}}}`))
	f.Add([]byte(`[{"format":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("decode: %v, not an ErrFormat", err)
			}
			return
		}
		b, err := d.encode()
		if err != nil {
			t.Fatalf("encode of a decoded document: %v", err)
		}
		if _, err := decode(b); err != nil {
			t.Fatalf("a written document does not decode: %v\n%s", err, b)
		}
	})
}
