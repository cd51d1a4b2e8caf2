package failover

import (
	"encoding/json"
	"strings"

	"github.com/sashabaranov/go-openai"
	"github.com/sashabaranov/go-openai/jsonschema"
)

// ImageTokens is what the estimates count for an image part: 765 tokens,
// OpenAI's count for a 1024×1024 image at high detail (scaled to 768×768,
// four 512-pixel tiles of 170 tokens plus 85 base tokens; see "Calculating
// costs" in OpenAI's vision guide, platform.openai.com/docs/guides/images-vision).
// Anthropic counts about width×height/750 (up to about 1,600 for its
// largest images), Gemini 258 a 768-pixel tile: the figure is a middle
// one, not any provider's exact count.
const ImageTokens = 765

// LowDetailImageTokens is what the estimates count for an image part that
// asks for "detail": "low": OpenAI's fixed 85 tokens.
const LowDetailImageTokens = 85

// messageTokens is the overhead of a message or input item, as OpenAI's
// cookbook counts it for chat models (3 to 4 tokens); toolTokens that of a
// tool or function definition.
const (
	messageTokens = 4
	toolTokens    = 4
)

// EstimateTokens is a cheap estimate of a chat request's tokens, for
// Limits.TPM, Limits.TPD and Limits.ContextTokens. It counts what a provider
// counts, at a token for every four bytes of text: message contents, text
// parts, names, refusals, reasoning, tool calls and their IDs; four tokens
// of overhead a message; tool and function definitions (names,
// descriptions and their JSON schemas: keys and string values) at four
// tokens of overhead each; a response_format JSON schema; each image part
// at [ImageTokens] ([LowDetailImageTokens] with detail "low"); plus the
// output the request reserves (MaxCompletionTokens, else MaxTokens). It errs
// on the high side for English and on the low side for some scripts; pass
// your own count with [Tokens] when it matters. [OpenAI] uses it for every
// chat call. It allocates nothing for schemas given as json.RawMessage,
// []byte, string, map[string]any or jsonschema.Definition; other schema
// types are marshaled once to be measured.
func EstimateTokens(req openai.ChatCompletionRequest) int {
	n, b := 0, 0
	for i := range req.Messages {
		m := &req.Messages[i]
		b += len(m.Content) + len(m.Name) + len(m.ReasoningContent) + len(m.Refusal) + len(m.ToolCallID)
		for _, p := range m.MultiContent {
			b += len(p.Text)
			if p.Type == openai.ChatMessagePartTypeImageURL || p.ImageURL != nil {
				n += imageTokens(p.ImageURL != nil && p.ImageURL.Detail == openai.ImageURLDetailLow)
			}
		}
		for _, tc := range m.ToolCalls {
			b += len(tc.ID) + len(tc.Function.Name) + len(tc.Function.Arguments)
		}
		if fc := m.FunctionCall; fc != nil {
			b += len(fc.Name) + len(fc.Arguments)
		}
		n += messageTokens
	}
	for i := range req.Tools {
		n += toolTokens
		b += toolBytes(&req.Tools[i])
	}
	//lint:ignore SA1019 older callers still send functions
	fns := req.Functions
	for i := range fns {
		n += toolTokens
		b += functionBytes(&fns[i])
	}
	if rf := req.ResponseFormat; rf != nil && rf.JSONSchema != nil {
		b += len(rf.JSONSchema.Name) + len(rf.JSONSchema.Description) + schemaBytes(rf.JSONSchema.Schema)
	}
	out := req.MaxCompletionTokens
	if out == 0 {
		//lint:ignore SA1019 older callers still set the deprecated field
		out = req.MaxTokens
	}
	return n + (b+3)/4 + max(out, 0)
}

// EstimateResponseTokens estimates a Responses API request the way
// [EstimateTokens] does a chat request: the instructions; the input, a
// string or a list of input items (messages with text, image and file
// parts, function call outputs, and maps or JSON of the same shapes) at
// four tokens of overhead an item; images at [ImageTokens]; file data and
// data URLs not at all (their text is the provider's to count); tool
// definitions; a text.format JSON schema; plus MaxOutputTokens.
func EstimateResponseTokens(req openai.CreateResponseRequest) int {
	var e anyEstimate
	e.b = len(req.Instructions)
	switch in := req.Input.(type) {
	case []any:
		for _, item := range in {
			e.n += messageTokens
			e.value(item, 0)
		}
	case []openai.ResponseInputMessage:
		for i := range in {
			e.n += messageTokens
			e.value(&in[i], 0)
		}
	default:
		e.value(in, 0)
	}
	for i := range req.Tools {
		e.n += toolTokens
		e.b += toolBytes(&req.Tools[i])
	}
	if t := req.Text; t != nil && t.Format != nil {
		e.b += len(t.Format.Name) + len(t.Format.Description) + schemaBytes(t.Format.Schema)
	}
	return e.n + (e.b+3)/4 + max(req.MaxOutputTokens, 0)
}

// estimateCompletion estimates a completion request the same way.
func estimateCompletion(req openai.CompletionRequest) int {
	b := 0
	switch p := req.Prompt.(type) {
	case string:
		b = len(p)
	case []string:
		for _, s := range p {
			b += len(s)
		}
	}
	return (b+3)/4 + req.MaxTokens
}

func imageTokens(low bool) int {
	if low {
		return LowDetailImageTokens
	}
	return ImageTokens
}

// toolBytes is the text of a tool definition: its function, and the
// Responses API's inline properties.
func toolBytes(t *openai.Tool) int {
	b := 0
	if t.Function != nil {
		b += functionBytes(t.Function)
	}
	for k, v := range t.Parameters {
		b += len(k) + schemaBytes(v)
	}
	return b
}

func functionBytes(f *openai.FunctionDefinition) int {
	return len(f.Name) + len(f.Description) + schemaBytes(f.Parameters)
}

// maxSchemaDepth bounds the walk of a schema or input value: deeper parts
// are not counted (and a cycle in a map ends).
const maxSchemaDepth = 64

// schemaBytes is the text of a JSON schema given in any of the forms
// go-openai accepts: its keys and string values, as the body estimate
// counts them.
func schemaBytes(v any) int {
	return valueBytes(v, 0)
}

func valueBytes(v any, depth int) int {
	if depth > maxSchemaDepth {
		return 0
	}
	switch s := v.(type) {
	case nil:
		return 0
	case string:
		if t := strings.TrimSpace(s); t != "" && t[0] == '{' {
			return jsonSchemaBytes([]byte(t)) // a schema as JSON text
		}
		return len(s)
	case json.RawMessage:
		return jsonSchemaBytes(s)
	case []byte:
		return jsonSchemaBytes(s)
	case map[string]any:
		b := 0
		for k, e := range s {
			b += len(k) + valueBytes(e, depth+1)
		}
		return b
	case []any:
		b := 0
		for _, e := range s {
			b += valueBytes(e, depth+1)
		}
		return b
	case []string:
		b := 0
		for _, e := range s {
			b += len(e)
		}
		return b
	case jsonschema.Definition:
		return definitionBytes(s, depth)
	case *jsonschema.Definition:
		if s == nil {
			return 0
		}
		return definitionBytes(*s, depth)
	case bool, int, int64, float64, float32, json.Number:
		return 0
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return jsonSchemaBytes(raw)
}

// definitionBytes counts a jsonschema.Definition as its JSON would read:
// each key present and each string value.
func definitionBytes(d jsonschema.Definition, depth int) int {
	if depth > maxSchemaDepth {
		return 0
	}
	b := 0
	if d.Type != "" {
		b += len("type") + len(d.Type)
	}
	if d.Description != "" {
		b += len("description") + len(d.Description)
	}
	if len(d.Enum) > 0 {
		b += len("enum")
		for _, e := range d.Enum {
			b += len(e)
		}
	}
	if len(d.Required) > 0 {
		b += len("required")
		for _, e := range d.Required {
			b += len(e)
		}
	}
	if d.Ref != "" {
		b += len("$ref") + len(d.Ref)
	}
	if len(d.Properties) > 0 {
		b += len("properties")
		for k, p := range d.Properties {
			b += len(k) + definitionBytes(p, depth+1)
		}
	}
	if len(d.Defs) > 0 {
		b += len("$defs")
		for k, p := range d.Defs {
			b += len(k) + definitionBytes(p, depth+1)
		}
	}
	if d.Items != nil {
		b += len("items") + definitionBytes(*d.Items, depth+1)
	}
	for i := range d.AnyOf {
		b += definitionBytes(d.AnyOf[i], depth+1)
	}
	if d.AdditionalProperties != nil {
		b += len("additionalProperties") + valueBytes(d.AdditionalProperties, depth+1)
	}
	return b
}

// jsonSchemaBytes counts a JSON schema's keys and string values.
func jsonSchemaBytes(raw []byte) int {
	s := jscan{b: raw}
	s.value(modeSchema, nil, 0)
	return s.text
}

// anyEstimate walks the input of a Responses API request.
type anyEstimate struct {
	n, b int
}

// value counts one input item or content part given as a go-openai type,
// a string, a map or a slice of them.
func (e *anyEstimate) value(v any, depth int) {
	if depth > maxSchemaDepth {
		return
	}
	switch x := v.(type) {
	case nil:
	case string:
		if !strings.HasPrefix(x, "data:") {
			e.b += len(x)
		}
	case []any:
		for _, p := range x {
			e.value(p, depth+1)
		}
	case openai.ResponseInputMessage:
		e.value(x.Content, depth+1)
	case *openai.ResponseInputMessage:
		if x != nil {
			e.value(x.Content, depth+1)
		}
	case []openai.ResponseInputText:
		for _, p := range x {
			e.b += len(p.Text)
		}
	case openai.ResponseInputText:
		e.b += len(x.Text)
	case *openai.ResponseInputText:
		if x != nil {
			e.b += len(x.Text)
		}
	case openai.ResponseInputImage:
		e.n += imageTokens(x.Detail == "low")
	case *openai.ResponseInputImage:
		if x != nil {
			e.n += imageTokens(x.Detail == "low")
		}
	case openai.ResponseInputFile:
		e.b += len(x.Filename)
	case *openai.ResponseInputFile:
		if x != nil {
			e.b += len(x.Filename)
		}
	case openai.ResponseFunctionCallOutput:
		e.b += len(x.CallID)
		e.value(x.Output, depth+1)
	case *openai.ResponseFunctionCallOutput:
		if x != nil {
			e.b += len(x.CallID)
			e.value(x.Output, depth+1)
		}
	case json.RawMessage:
		e.json(x)
	case []byte:
		e.json(x)
	default:
		raw, err := json.Marshal(v) // maps and other shapes: as their JSON reads
		if err == nil {
			e.json(raw)
		}
	}
}

// json counts an input value given as JSON with the body estimate's rules.
func (e *anyEstimate) json(raw []byte) {
	s := jscan{b: raw}
	s.value(modeText, nil, 0)
	e.b += s.text
	e.n += s.tokens
}

// EstimateBodyTokens estimates the tokens of a request body as [Transport]
// sees it: the JSON of an OpenAI chat, completion, Responses or
// embeddings request, an Anthropic messages request, or a Gemini
// generateContent, streamGenerateContent, embedContent or
// batchEmbedContents request, told apart by the path's end. It counts the
// same things as [EstimateTokens], from the JSON: a token for every four
// bytes of the string values of messages, contents, input, prompt,
// instructions, system and systemInstruction (not of the keys, nor of
// "type", "role" and MIME types, nor of base64 "data" and "data:" URLs),
// numbers in a token-array prompt or input at a token each, four tokens an
// item of messages, contents or input; tools, functions, response_format,
// text.format and Gemini's response schemas by their keys and string
// values; each image part (OpenAI image_url and input_image, Anthropic
// image, Gemini inlineData or fileData of an image MIME type) at
// [ImageTokens] ([LowDetailImageTokens] with detail "low"); plus the output
// it reserves: the largest of max_tokens, max_completion_tokens,
// max_output_tokens and generationConfig.maxOutputTokens. Other paths, and
// bodies that are not a JSON object, estimate 0. It allocates nothing.
func EstimateBodyTokens(path string, body []byte) int {
	if !isModelPath(path) {
		return 0
	}
	s := jscan{b: body}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return 0
	}
	s.top()
	return s.tokens + (s.text+3)/4 + s.out
}

// isModelPath reports whether a request path sends a prompt to a model.
func isModelPath(path string) bool {
	for _, suffix := range [...]string{"/chat/completions", "/completions", "/responses", "/embeddings", "/messages",
		":generateContent", ":streamGenerateContent", ":embedContent", ":batchEmbedContents"} {
		if strings.HasSuffix(path, suffix) {
			return true
		}
	}
	return false
}

// The ways jscan counts a value.
const (
	modeSkip   = iota // count nothing
	modeText          // string values, images; no keys
	modeTokens        // modeText, and numbers as a token each (token-array prompts)
	modeSchema        // keys and string values
	modeConfig        // Gemini's generationConfig: maxOutputTokens and response schemas
)

// jscan is an allocation-free walk over a JSON value that sums what the
// estimate counts. Malformed JSON ends the walk with what it counted.
type jscan struct {
	b      []byte
	i      int
	text   int // bytes of counted text
	tokens int // tokens counted directly: images, overheads
	out    int // the output the request reserves
	bad    bool
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// top walks the request object, choosing a mode for each field.
func (s *jscan) top() {
	s.object(func(key []byte) {
		switch string(key) {
		case "messages", "contents", "input":
			mode := modeText
			if string(key) == "input" {
				mode = modeTokens
			}
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '[' {
				s.array(func() {
					s.ws()
					if s.i < len(s.b) && s.b[s.i] == '{' {
						s.tokens += messageTokens
					}
					s.value(mode, nil, 1)
				})
				return
			}
			s.value(mode, key, 1)
		case "prompt":
			s.value(modeTokens, key, 1)
		case "instructions", "system", "systemInstruction", "system_instruction", "suffix":
			s.value(modeText, key, 1)
		case "tools", "functions":
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '[' {
				s.array(func() { s.tokens += toolTokens; s.value(modeSchema, nil, 1) })
				return
			}
			s.value(modeSchema, key, 1)
		case "response_format", "text":
			s.value(modeSchema, key, 1)
		case "generationConfig", "generation_config":
			s.value(modeConfig, key, 1)
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			s.number(true)
		default:
			s.value(modeSkip, key, 1)
		}
	})
}

// object walks an object at s.i, calling field with s.i at each value.
// It reports false if s.i is not at an object.
func (s *jscan) object(field func(key []byte)) bool {
	s.ws()
	if s.bad || s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	for !s.bad {
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return true
		}
		if s.b[s.i] == '}' {
			s.i++
			return true
		}
		if s.b[s.i] == ',' {
			s.i++
			continue
		}
		start, end, ok := s.str()
		if !ok {
			return true
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.bad = true
			return true
		}
		s.i++
		before := s.i
		field(s.b[start:end])
		if s.i == before && !s.bad { // a field that read nothing: skip its value
			s.value(modeSkip, nil, 1)
		}
	}
	return true
}

// array walks an array at s.i, calling elem with s.i at each element.
func (s *jscan) array(elem func()) {
	s.ws()
	if s.bad || s.i >= len(s.b) || s.b[s.i] != '[' {
		return
	}
	s.i++
	for !s.bad {
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		switch s.b[s.i] {
		case ']':
			s.i++
			return
		case ',':
			s.i++
			continue
		}
		before := s.i
		elem()
		if s.i == before {
			s.bad = true // nothing a value can start with
		}
	}
}

// str reads a string at s.i and returns the bounds of its contents.
func (s *jscan) str() (start, end int, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.bad = true
		return 0, 0, false
	}
	s.i++
	start = s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			end = s.i
			s.i++
			return start, end, true
		}
		s.i++
	}
	s.bad = true
	s.i = len(s.b)
	return start, len(s.b), false
}

// number reads a number or literal at s.i; with reserve, a non-negative
// integer raises s.out to it.
func (s *jscan) number(reserve bool) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ':' || c == '"' || c == '{' || c == '[' {
			break
		}
		s.i++
	}
	if !reserve {
		return
	}
	n := 0
	for _, c := range s.b[start:s.i] {
		if c < '0' || c > '9' {
			return
		}
		if n = n*10 + int(c-'0'); n > 1<<30 {
			return
		}
	}
	s.out = max(s.out, n)
}

// skipTextKeys are fields whose string values are not prompt text.
func skipTextKey(key []byte) bool {
	switch string(key) {
	case "type", "role", "mimeType", "mime_type", "media_type", "detail", "data", "cache_control", "status", "format":
		return true
	}
	return false
}

// isImageType reports whether a part's "type" names an image.
func isImageType(t []byte) bool {
	switch string(t) {
	case "image_url", "input_image", "image":
		return true
	}
	return false
}

// value walks any value at s.i in mode; key is the field it belongs to.
// It reports whether a "detail": "low" was seen inside it, for the image
// part that holds it.
func (s *jscan) value(mode int, key []byte, depth int) (low bool) {
	s.ws()
	if s.bad || s.i >= len(s.b) {
		s.bad = true
		return false
	}
	if depth > 128 {
		s.bad = true
		return false
	}
	switch s.b[s.i] {
	case '"':
		start, end, ok := s.str()
		if !ok {
			if mode != modeSkip && string(key) != "data" { // a cut string: count what came
				s.text += end - start
			}
			return false
		}
		v := s.b[start:end]
		switch mode {
		case modeText, modeTokens:
			if string(key) == "detail" && string(v) == "low" {
				return true
			}
			if !skipTextKey(key) && !hasDataPrefix(v) {
				s.text += len(v)
			}
		case modeSchema:
			s.text += len(v)
		}
		return false
	case '{':
		return s.objectValue(mode, key, depth)
	case '[':
		s.array(func() {
			if s.value(mode, key, depth+1) {
				low = true
			}
		})
		return low
	default:
		s.number(false)
		if mode == modeTokens {
			s.tokens++
		}
		return false
	}
}

func hasDataPrefix(v []byte) bool {
	return len(v) >= 5 && string(v[:5]) == "data:"
}

// objectValue walks an object value: in text modes it counts an image part
// once; in schema mode its keys; in config mode the output reservation
// and response schemas.
func (s *jscan) objectValue(mode int, key []byte, depth int) (low bool) {
	var typ, mime []byte
	media := isMediaKey(key)
	s.object(func(k []byte) {
		switch mode {
		case modeSkip:
			s.value(modeSkip, k, depth+1)
		case modeSchema:
			s.text += len(k)
			s.value(modeSchema, k, depth+1)
		case modeConfig:
			switch string(k) {
			case "maxOutputTokens", "max_output_tokens":
				s.number(true)
			case "responseSchema", "response_schema", "responseJsonSchema", "response_json_schema":
				s.value(modeSchema, k, depth+1)
			default:
				s.value(modeSkip, k, depth+1)
			}
		default:
			m := mode
			if m == modeTokens {
				m = modeText // a token array is a list of numbers, not an object's field
			}
			if string(k) == "cache_control" {
				s.value(modeSkip, k, depth+1)
				return
			}
			if isTypeKey(k) {
				s.ws()
				if start, end, ok := s.peekString(); ok {
					if string(k) == "type" {
						typ = s.b[start:end]
					} else {
						mime = s.b[start:end]
					}
				}
			}
			if s.value(m, k, depth+1) {
				low = true
			}
		}
	})
	if mode == modeText || mode == modeTokens {
		if isImageType(typ) || (media && len(mime) >= 6 && string(mime[:6]) == "image/") {
			s.tokens += imageTokens(low)
			return false // the detail belonged to this image
		}
	}
	return low
}

// peekString returns the bounds of a string at s.i without moving.
func (s *jscan) peekString() (start, end int, ok bool) {
	i, bad := s.i, s.bad
	start, end, ok = s.str()
	s.i, s.bad = i, bad
	return start, end, ok
}

// isMediaKey reports whether an object under key is Gemini inline or file
// data, an image when its MIME type says so.
func isMediaKey(key []byte) bool {
	switch string(key) {
	case "inlineData", "inline_data", "fileData", "file_data":
		return true
	}
	return false
}

// isTypeKey reports whether a field tells an image part apart.
func isTypeKey(key []byte) bool {
	switch string(key) {
	case "type", "mimeType", "mime_type":
		return true
	}
	return false
}

// estimateEmbedding estimates an embeddings request's input: 4 bytes a
// token for text, a token per number for token arrays, at least 1.
func estimateEmbedding(conv openai.EmbeddingRequestConverter) int {
	var n int
	switch r := conv.(type) {
	case openai.EmbeddingRequest:
		n = estimateInput(r.Input)
	case *openai.EmbeddingRequest:
		n = estimateInput(r.Input)
	case openai.EmbeddingRequestStrings:
		n = estimateInput(r.Input)
	case *openai.EmbeddingRequestStrings:
		n = estimateInput(r.Input)
	case openai.EmbeddingRequestTokens:
		n = estimateInput(r.Input)
	case *openai.EmbeddingRequestTokens:
		n = estimateInput(r.Input)
	}
	return max(n, 1)
}

// estimateInput estimates an embeddings input: a string, strings, token
// arrays or arrays of them.
func estimateInput(in any) int {
	switch v := in.(type) {
	case string:
		return (len(v) + 3) / 4
	case []string:
		n := 0
		for _, s := range v {
			n += (len(s) + 3) / 4
		}
		return n
	case []int:
		return len(v)
	case [][]int:
		n := 0
		for _, t := range v {
			n += len(t)
		}
		return n
	case []any:
		n := 0
		for _, x := range v {
			n += estimateInput(x)
		}
		return n
	}
	return 0
}
