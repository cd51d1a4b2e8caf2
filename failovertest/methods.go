package failovertest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/sashabaranov/go-openai"
)

// formModel returns the "model" field of a multipart body (go-openai's
// image edits and variations, transcriptions and translations), or "".
func formModel(r *http.Request, body []byte) string {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return ""
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return ""
		}
		if p.FormName() == "model" && p.FileName() == "" {
			b, _ := io.ReadAll(io.LimitReader(p, 1<<10))
			return string(b)
		}
	}
}

// FormFile returns the content of the file part called field of a
// recorded multipart body (go-openai sends "image", "mask" or "file"),
// and whether there was one.
func FormFile(req Request, field string) ([]byte, bool) {
	_, params, err := mime.ParseMediaType(req.ContentType)
	if err != nil {
		return nil, false
	}
	mr := multipart.NewReader(bytes.NewReader(req.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil, false
		}
		if p.FormName() == field && p.FileName() != "" {
			b, err := io.ReadAll(p)
			return b, err == nil
		}
	}
}

// methodBody is the default success of the endpoints beyond chat,
// completions, embeddings and models: the Responses API, images, audio,
// moderations and files. ok is false for other paths.
func methodBody(req Request) (body string, ok bool) {
	var v any
	switch p := req.Path; {
	case strings.HasSuffix(p, "/responses"):
		v = response(req.Model, "completed")
	case strings.Contains(p, "/images/"):
		v = map[string]any{"created": modelCreated, "data": []any{map[string]any{"url": "https://failovertest.invalid/image.png"}}}
	case strings.HasSuffix(p, "/audio/speech"):
		return "fake-audio:" + req.Model, true
	case strings.HasSuffix(p, "/audio/transcriptions"), strings.HasSuffix(p, "/audio/translations"):
		v = map[string]any{"task": "transcribe", "text": "ok"}
	case strings.HasSuffix(p, "/moderations"):
		v = map[string]any{"id": "modr-fake", "model": req.Model, "results": []any{map[string]any{"flagged": false}}}
	case strings.HasSuffix(p, "/files"):
		v = map[string]any{"object": "list", "data": []any{}}
	default:
		return "", false
	}
	b, _ := json.Marshal(v)
	return string(b), true
}

func response(model, status string) map[string]any {
	return map[string]any{"id": "resp-fake", "object": "response", "status": status, "model": model,
		"output": []any{map[string]any{"type": "message", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": "ok"}}}}}
}

// defaultChunks is the default stream for a path: Responses API events
// for /responses, a chat delta otherwise.
func defaultChunks(req Request) []string {
	if strings.HasSuffix(req.Path, "/responses") {
		return ResponseEvents(req.Model, "ok")
	}
	return []string{Chunk(req.Model, "ok")}
}

// ResponseEvents returns a Responses API stream (SSE data payloads) whose
// output text is the deltas: response.created, one
// response.output_text.delta each, response.completed. Drop the last
// event to script a stream cut before its end.
func ResponseEvents(model string, deltas ...string) []string {
	ev := func(v map[string]any) string { b, _ := json.Marshal(v); return string(b) }
	out := []string{ev(map[string]any{"type": openai.ResponseStreamEventCreated, "sequence_number": 0, "response": response(model, "in_progress")})}
	for i, d := range deltas {
		out = append(out, ev(map[string]any{"type": openai.ResponseStreamEventOutputTextDelta, "sequence_number": i + 1, "delta": d}))
	}
	return append(out, ev(map[string]any{"type": openai.ResponseStreamEventCompleted, "sequence_number": len(deltas) + 1, "response": response(model, "completed")}))
}
