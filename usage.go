package failover

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sashabaranov/go-openai"
)

// usage counts what a member served: calls answered and the tokens its
// provider reported for them.
type usage struct {
	served     calls // striped like the call counter: a healthy call writes no shared line
	prompt     atomic.Uint64
	completion atomic.Uint64
}

// add counts prompt and completion tokens; negative counts count as 0.
func (u *usage) add(prompt, completion int) {
	if prompt > 0 {
		u.prompt.Add(uint64(prompt))
	}
	if completion > 0 {
		u.completion.Add(uint64(completion))
	}
}

// ReportUsage adds the prompt and completion tokens that the provider
// reported for a response of the member called member to its
// Status.PromptTokens and Status.CompletionTokens. [OpenAI] and
// [Transport] report the usage of the responses they return themselves;
// other glue (a call made through [Do] with another SDK) reports it here.
// It counts no call: Status.Served counts the calls that [Do] saw
// succeed. Negative counts count as 0; an unknown name is ignored. It is
// safe for concurrent use.
func (p *Pool[C]) ReportUsage(member string, prompt, completion int) {
	p.used(context.Background(), Usage{Member: member, PromptTokens: prompt, CompletionTokens: completion})
}

// used counts u to its member and hands it to the Usage hook: a hook
// hears only usage counted to a member of the pool.
func (p *Pool[C]) used(ctx context.Context, u Usage) {
	if u.PromptTokens <= 0 && u.CompletionTokens <= 0 {
		return
	}
	_, m, err := p.member(u.Member)
	if err != nil {
		return
	}
	m.st.use.add(u.PromptTokens, u.CompletionTokens)
	if h := p.set.hooks.Usage; h != nil {
		u.PromptTokens, u.CompletionTokens = max(u.PromptTokens, 0), max(u.CompletionTokens, 0)
		h(ctx, u)
	}
}

// usageOf returns the token usage of a go-openai response, given as a
// pointer, when its type carries one, with the model it names.
func usageOf(v any) (Usage, bool) {
	switch r := v.(type) {
	case *openai.ChatCompletionResponse:
		return Usage{Model: r.Model, PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens}, true
	case *openai.CompletionResponse:
		if r.Usage != nil {
			return Usage{Model: r.Model, PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens}, true
		}
	case *openai.EmbeddingResponse:
		return Usage{Model: string(r.Model), PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens}, true
	case *openai.EmbeddingResponseBase64:
		return Usage{Model: string(r.Model), PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens}, true
	case *openai.CreateResponseResponse:
		if r.Usage != nil {
			return Usage{Model: r.Model, PromptTokens: r.Usage.InputTokens, CompletionTokens: r.Usage.OutputTokens}, true
		}
	case *openai.ImageResponse:
		return Usage{PromptTokens: r.Usage.InputTokens, CompletionTokens: r.Usage.OutputTokens}, true
	}
	return Usage{}, false
}

// usageKey is the field of a JSON object that usageScan is looking at.
type usageKey int8

const (
	keyNone       usageKey = iota
	keyUsage               // "usage" (OpenAI, Anthropic) or "usageMetadata" (Gemini)
	keyPrompt              // prompt_tokens, input_tokens, promptTokenCount
	keyCompletion          // completion_tokens, output_tokens, candidatesTokenCount
	keyThoughts            // thoughtsTokenCount: Gemini's thinking, billed as output
	keyModel               // "model" (OpenAI, Anthropic) or "modelVersion" (Gemini), outside usage
)

// usageKeys names the fields usageScan reads. A "usage" object's own
// fields count only at its top level: cached_tokens in
// prompt_tokens_details is part of prompt_tokens.
func usageKeyOf(name []byte, inUsage bool) usageKey {
	if !inUsage {
		switch string(name) {
		case "usage", "usageMetadata":
			return keyUsage
		case "model", "modelVersion":
			return keyModel
		}
		return keyNone
	}
	switch string(name) {
	case "prompt_tokens", "input_tokens", "promptTokenCount":
		return keyPrompt
	case "completion_tokens", "output_tokens", "candidatesTokenCount":
		return keyCompletion
	case "thoughtsTokenCount":
		return keyThoughts
	}
	return keyNone
}

// maxUsageKey is the longest field name usageScan compares; maxModel the
// longest model name it keeps (a longer one is not kept).
const (
	maxUsageKey = 24
	maxModel    = 96
	modelDepth  = 2 // a model's field is at most this deep: top level, or Anthropic's message_start.message, Responses' response
)

// usageScan reads the token usage out of JSON (a response body, or an
// event stream's data lines) as it passes, byte by byte, without keeping
// it: it finds a "usage" or "usageMetadata" object outside strings and
// the integer fields of its top level, and the response's model (a
// "model" or "modelVersion" string near the top level). When an object appears more than
// once (an Anthropic stream's message_start and message_delta, every
// Gemini chunk) a field's later value replaces its earlier one: those
// counts are cumulative. It allocates nothing but the model's name, once a report.
type usageScan struct {
	sse       bool // a newline ends a JSON document (an event's data line)
	inStr     bool
	esc       bool
	str       [maxModel]byte // the current string's first bytes
	n         int            // its length so far; past maxUsageKey it matches no key
	capture   bool           // the current string is a model's value
	topModel  bool           // take the model only from the top level (a request's)
	model     [maxModel]byte // the last model seen
	modelN    int
	key       usageKey // the string just closed, when it may be a key
	colon     bool     // a ':' followed key
	depth     int32    // of objects and arrays
	in        int32    // depth inside the usage object being read; 0 outside
	numKey    usageKey // the field whose number is being read
	num       int64
	cur       [5]int64 // the usage object being read, by usageKey; -1 absent
	prompt    int64    // the usage seen so far; -1 none
	complete  int64
	thoughts  int64
	seen      bool // a usage object closed
	docEnded  bool // a JSON document (not an event stream) closed after usage
	initiated bool
}

func (s *usageScan) init() {
	if !s.initiated {
		s.prompt, s.complete, s.thoughts, s.initiated = -1, -1, -1, true
	}
}

// feed scans the bytes b.
func (s *usageScan) feed(b []byte) {
	s.init()
	for _, c := range b {
		s.byte(c)
	}
}

func (s *usageScan) byte(c byte) {
	if s.inStr {
		switch {
		case s.esc:
			s.esc = false
			s.n = maxUsageKey + 1 // no field usageScan reads has an escape
			s.capture = false     // nor a model name
		case c == '\\':
			s.esc = true
		case c == '"':
			s.inStr = false
			if s.capture && s.n <= maxModel {
				s.modelN = copy(s.model[:], s.str[:s.n])
			}
			s.key, s.colon, s.capture = keyNone, false, false
			if s.n <= maxUsageKey && (s.in == 0 || s.depth == s.in) {
				s.key = usageKeyOf(s.str[:s.n], s.in != 0)
				if s.key == keyModel && (s.depth > modelDepth || (s.topModel && s.depth > 1)) {
					s.key = keyNone
				}
			}
		case c == '\n':
			s.reset() // JSON strings hold no newline: the line was not JSON
		default:
			if s.n < maxModel {
				s.str[s.n] = c
			}
			s.n++
		}
		return
	}
	if s.numKey != keyNone {
		if c >= '0' && c <= '9' {
			if s.num < 1<<40 {
				s.num = s.num*10 + int64(c-'0')
			}
			return
		}
		s.cur[s.numKey] = s.num
		s.numKey = keyNone
	}
	switch c {
	case ' ', '\t', '\r':
		return
	case '\n':
		if s.sse {
			s.reset()
		}
		return
	case '"':
		s.inStr, s.n = true, 0
		s.capture = s.key == keyModel && s.colon
		return
	case ':':
		if s.key != keyNone && !s.colon {
			s.colon = true
			return
		}
	case '{', '[':
		s.depth++
		if c == '{' && s.in == 0 && s.key == keyUsage && s.colon {
			s.in = s.depth
			s.cur = [5]int64{-1, -1, -1, -1, -1}
		}
	case '}', ']':
		if s.in != 0 && s.depth == s.in {
			s.close()
		}
		if s.depth--; s.depth <= 0 {
			s.depth = 0
			if s.seen && !s.sse {
				s.docEnded = true
			}
		}
	default:
		if c >= '0' && c <= '9' && s.colon && s.key >= keyPrompt && s.in != 0 {
			s.numKey, s.num = s.key, int64(c-'0')
		}
	}
	s.key, s.colon = keyNone, false
}

// close ends the usage object being read: its fields replace those seen.
func (s *usageScan) close() {
	s.in = 0
	s.seen = true
	if v := s.cur[keyPrompt]; v >= 0 {
		s.prompt = v
	}
	if v := s.cur[keyCompletion]; v >= 0 {
		s.complete = v
	}
	if v := s.cur[keyThoughts]; v >= 0 {
		s.thoughts = v
	}
}

// reset forgets a document cut short; the usage seen stays.
func (s *usageScan) reset() {
	s.inStr, s.esc, s.key, s.colon, s.depth, s.in, s.numKey = false, false, keyNone, false, 0, 0, keyNone
	s.capture = false
}

// modelName returns the last model name seen, or "".
func (s *usageScan) modelName() string { return string(s.model[:s.modelN]) }

// counts returns the usage seen: prompt and completion tokens.
func (s *usageScan) counts() (prompt, completion int, ok bool) {
	if !s.seen {
		return 0, 0, false
	}
	p, c := max(s.prompt, 0), max(s.complete, 0)+max(s.thoughts, 0)
	return int(p), int(c), true
}

// scanUsage returns the usage in one JSON document, such as a stream
// event's data, with the model it names.
func scanUsage(raw []byte) (u Usage, ok bool) {
	if !bytes.Contains(raw, []byte(`"usage`)) {
		return Usage{}, false
	}
	var s usageScan
	s.feed(raw)
	if s.numKey != keyNone { // a document that ends in a number is no object; be lenient
		s.cur[s.numKey] = s.num
	}
	return s.usage()
}

// usage returns the usage seen, with the model, if any usage was seen.
func (s *usageScan) usage() (Usage, bool) {
	p, c, ok := s.counts()
	if !ok {
		return Usage{}, false
	}
	return Usage{Model: s.modelName(), PromptTokens: p, CompletionTokens: c}, true
}

// usageReporter is what a usageMeter reports to: a pool.
type usageReporter interface {
	used(ctx context.Context, u Usage)
}

// usageMeter reports the token usage of a successful response that
// Transport passes through, read by usageScan from the bytes the caller
// reads, without keeping them: once, when the JSON document ends, at the
// body's end, or when the body is closed. Without rep it reports nothing.
type usageMeter struct {
	mu     sync.Mutex // a caller may Close the body while a Read runs
	scan   usageScan
	rep    usageReporter
	ctx    context.Context // the attempt's, for the Usage hook
	member string
	done   bool
}

// read scans what one Read of the body returned.
func (u *usageMeter) read(p []byte, err error) {
	if u.rep == nil {
		return
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return
	}
	u.scan.feed(p)
	var us Usage
	ok := false
	if u.scan.docEnded || errors.Is(err, io.EOF) {
		us, ok = u.take()
	}
	u.mu.Unlock()
	if ok {
		u.rep.used(u.ctx, us) // the Usage hook runs with no lock held
	}
}

// flush reports the usage seen, once.
func (u *usageMeter) flush() {
	if u.rep == nil {
		return
	}
	u.mu.Lock()
	us, ok := u.take()
	u.mu.Unlock()
	if ok {
		u.rep.used(u.ctx, us)
	}
}

// take returns the usage seen, once, to report; u.mu is held.
func (u *usageMeter) take() (Usage, bool) {
	if u.done {
		return Usage{}, false
	}
	u.done = true
	us, ok := u.scan.usage()
	us.Member = u.member
	return us, ok
}
