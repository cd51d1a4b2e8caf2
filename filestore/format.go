package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/llmfailover/failover"
)

// ErrFormat is wrapped by the error of [Open], and of later reads, for a
// file that is not a filestore file of a version this package reads: text
// that is not JSON, a truncated file, JSON of another shape, or a file
// written by a newer version of the package. The store never writes over
// such a file.
var ErrFormat = errors.New("filestore: not a filestore file")

// formatName is the value of the "format" field that marks a filestore
// file, and formatVersion the version of its layout this package reads
// and writes.
const (
	formatName    = "github.com/llmfailover/failover/filestore"
	formatVersion = 1
)

// maxFileSize bounds what Open reads: a filestore file holds a few records
// per member; a larger file is someone else's.
const maxFileSize = 64 << 20

// document is the file: every member's shared state, the probe leases,
// and the windows of Take.
type document struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Counter is the last Version given to a state: versions grow across
	// processes and runs.
	Counter uint64                `json:"counter"`
	Members map[string]*record    `json:"members,omitempty"`
	Leases  map[string]*leaseRec  `json:"leases,omitempty"`
	Limits  map[string]*windowRec `json:"limits,omitempty"`
}

// record is a member's failover.Shared, as the last Save left it. Active
// states stay in the file, so that other processes learn of a recovery.
type record struct {
	State   string    `json:"state"`
	Lane    string    `json:"lane"`
	Reason  string    `json:"reason,omitempty"`
	Level   int       `json:"level,omitempty"`
	Until   time.Time `json:"until,omitzero"`
	Manual  bool      `json:"manual,omitempty"`
	At      time.Time `json:"at,omitzero"`
	Origin  string    `json:"origin,omitempty"`
	Seq     uint64    `json:"seq,omitempty"`
	Version uint64    `json:"version"`
}

// leaseRec is a member's probe lease.
type leaseRec struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// windowRec is a member's calls as Take counts them: the starts of the
// last minute (RPM), the tokens of the last minute (TPM), and the counts
// of the current day and the one before (RPD, TPD). Times in the minute
// windows are Unix nanoseconds, oldest first.
type windowRec struct {
	Starts []int64    `json:"starts,omitempty"`
	Tokens [][2]int64 `json:"tokens,omitempty"` // [start, tokens]
	Days   []dayRec   `json:"days,omitempty"`
}

// dayRec counts the calls and tokens of the day that ends at End.
type dayRec struct {
	End      time.Time `json:"end"`
	Requests int       `json:"requests,omitempty"`
	Tokens   int       `json:"tokens,omitempty"`
}

// newDocument returns the document of a fresh store.
func newDocument() *document {
	return &document{
		Format:  formatName,
		Version: formatVersion,
		Members: map[string]*record{},
		Leases:  map[string]*leaseRec{},
		Limits:  map[string]*windowRec{},
	}
}

// decode parses a file's content. Empty content (or only white space) is a
// fresh store; anything that is not a valid document of formatVersion is
// an error wrapping ErrFormat.
func decode(data []byte) (*document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return newDocument(), nil
	}
	// The marker first, so that a foreign JSON file says so rather than
	// which of its fields this package does not know.
	var head map[string]json.RawMessage
	if err := json.Unmarshal(data, &head); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, fmt.Errorf("%w: JSON %s, not an object", ErrFormat, typ.Value)
		}
		return nil, fmt.Errorf("%w: %v", ErrFormat, jsonError(err))
	}
	var format string
	var version int
	switch {
	case head["format"] == nil:
		return nil, fmt.Errorf("%w: no \"format\" field (JSON of another program?)", ErrFormat)
	case json.Unmarshal(head["format"], &format) != nil || format != formatName:
		return nil, fmt.Errorf("%w: format %s, want %q", ErrFormat, head["format"], formatName)
	case head["version"] == nil:
		return nil, fmt.Errorf("%w: no \"version\" field", ErrFormat)
	case json.Unmarshal(head["version"], &version) != nil:
		return nil, fmt.Errorf("%w: version %s is not a number", ErrFormat, head["version"])
	case version > formatVersion:
		return nil, fmt.Errorf("%w: format version %d is newer than this package's %d; upgrade github.com/llmfailover/failover", ErrFormat, version, formatVersion)
	case version != formatVersion:
		return nil, fmt.Errorf("%w: unknown format version %d", ErrFormat, version)
	}
	d := newDocument()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a field this version would drop on its next write
	if err := dec.Decode(d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the document", ErrFormat)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return d, nil
}

// jsonError shortens an encoding/json error for a person.
func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		if strings.Contains(syn.Error(), "unexpected end") {
			return fmt.Errorf("truncated JSON: it ends at byte %d", syn.Offset)
		}
		return fmt.Errorf("not JSON at byte %d: %v", syn.Offset, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return err
}

// check validates what JSON cannot: names, states, lanes, counts. It also
// puts the windows in order, so that a hand-edited file cannot confuse
// Take.
func (d *document) check() error {
	if d.Members == nil {
		d.Members = map[string]*record{}
	}
	if d.Leases == nil {
		d.Leases = map[string]*leaseRec{}
	}
	if d.Limits == nil {
		d.Limits = map[string]*windowRec{}
	}
	for name, r := range d.Members {
		if name == "" || r == nil {
			return errors.New("a member without a name or a record")
		}
		if _, err := r.shared(name); err != nil {
			return fmt.Errorf("member %q: %v", name, err)
		}
		if r.Version > d.Counter {
			return fmt.Errorf("member %q: version %d above the counter %d", name, r.Version, d.Counter)
		}
	}
	for name, l := range d.Leases {
		if name == "" || l == nil || l.Holder == "" {
			return fmt.Errorf("lease of %q: no holder", name)
		}
	}
	for name, w := range d.Limits {
		if name == "" || w == nil {
			return errors.New("limits without a member name")
		}
		for _, t := range w.Tokens {
			if t[1] <= 0 {
				return fmt.Errorf("limits of %q: a token entry of %d tokens", name, t[1])
			}
		}
		for _, day := range w.Days {
			if day.End.IsZero() || day.Requests < 0 || day.Tokens < 0 {
				return fmt.Errorf("limits of %q: a bad day entry", name)
			}
		}
		slices.Sort(w.Starts)
		slices.SortFunc(w.Tokens, func(a, b [2]int64) int { return cmpInt(a[0], b[0]) })
	}
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// encode returns the file's content.
func (d *document) encode() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// laneNames are the lanes by their String.
var laneNames = map[string]failover.Lane{}

func init() {
	for l := failover.LaneNone; l <= failover.LanePermanent; l++ {
		laneNames[l.String()] = l
	}
}

// newRecord is the record of s.
func newRecord(s failover.Shared) *record {
	return &record{
		State: s.State.String(), Lane: s.Lane.String(), Reason: string(s.Reason), Level: s.Level,
		Until: s.Until, Manual: s.Manual, At: s.At, Origin: s.Origin, Seq: s.Seq, Version: s.Version,
	}
}

// shared is the state r records for member.
func (r *record) shared(member string) (failover.Shared, error) {
	s := failover.Shared{
		Member: member, Reason: failover.Reason(r.Reason), Level: r.Level, Until: r.Until,
		Manual: r.Manual, At: r.At, Origin: r.Origin, Seq: r.Seq, Version: r.Version,
	}
	if err := s.State.UnmarshalText([]byte(r.State)); err != nil {
		return s, err
	}
	lane, ok := laneNames[r.Lane]
	if !ok {
		return s, fmt.Errorf("unknown lane %q", r.Lane)
	}
	s.Lane = lane
	if r.Level < 0 {
		return s, fmt.Errorf("level %d", r.Level)
	}
	return s, nil
}

// stamp identifies a version of the file: a poll reads it again only
// when its stamp changes (an atomic replace makes a new file).
type stamp struct {
	info os.FileInfo // nil: no file
}

// same reports whether a and b are the same version of the file.
func (a stamp) same(b stamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime())
}

// read reads and decodes the file at path. A missing file is a fresh
// store.
func read(path string) (*document, stamp, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return newDocument(), stamp{}, nil
	}
	if err != nil {
		return nil, stamp{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, stamp{}, err
	}
	if !info.Mode().IsRegular() {
		return nil, stamp{}, fmt.Errorf("filestore: %s is not a regular file", path)
	}
	if info.Size() > maxFileSize {
		return nil, stamp{}, fmt.Errorf("%w: %s is %d bytes, more than a filestore file holds", ErrFormat, path, info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, stamp{}, err
	}
	d, err := decode(data)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, stamp{info}, nil
}
