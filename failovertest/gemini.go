package failovertest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Gemini's API, as the server answers {version}/models/{model}:generateContent
// and :streamGenerateContent?alt=sse (any path with a models/{model}:method
// segment, so Vertex AI's publishers/google/models/... too): a
// GenerateContentResponse (candidates, content parts, usageMetadata),
// streams of such responses as "data:" events with no terminator, and
// Google's errors {"error":{"code":...,"message":...,"status":...,"details":[...]}}.
// A Gemini call's key is its x-goog-api-key header or its ?key= query
// parameter; its model is the one in the path.

// geminiPath returns the model and method of a models/{model}:{method} path,
// or empty strings.
func geminiPath(path string) (model, method string) {
	i := strings.LastIndex(path, "/models/")
	if i < 0 {
		return "", ""
	}
	rest := path[i+len("/models/"):]
	j := strings.LastIndexByte(rest, ':')
	if j <= 0 || j == len(rest)-1 || strings.ContainsRune(rest[j:], '/') {
		return "", ""
	}
	return rest[:j], rest[j+1:]
}

// geminiMethodOf returns the method of a Gemini models/{model}:{method}
// path, or "".
func geminiMethodOf(path string) string {
	_, m := geminiPath(path)
	return m
}

func geminiCandidate(text, finish string) map[string]any {
	c := map[string]any{"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}}, "index": 0}
	if finish != "" {
		c["finishReason"] = finish
	}
	return c
}

func geminiResponse(model string, n int, candidate map[string]any) string {
	b, _ := json.Marshal(map[string]any{
		"candidates":    []any{candidate},
		"usageMetadata": map[string]any{"promptTokenCount": 10, "candidatesTokenCount": n, "totalTokenCount": 10 + n},
		"modelVersion":  model,
		"responseId":    "failovertest",
	})
	return string(b)
}

// GeminiResponse returns a GenerateContentResponse (the body of
// :generateContent) whose one candidate's text is text, with finishReason
// STOP and usageMetadata; modelVersion is model.
func GeminiResponse(model, text string) string {
	return geminiResponse(model, max(1, len(text)/4), geminiCandidate(text, "STOP"))
}

// GeminiOK returns a scripted Gemini success whose text is text. Its
// modelVersion is empty: an unscripted call answers with the model of its
// path.
func GeminiOK(text string) Response {
	return Response{Body: GeminiResponse("", text)}
}

// GeminiChunks returns the data of each event of a Gemini stream
// (:streamGenerateContent?alt=sse), one GenerateContentResponse per text;
// the last carries finishReason STOP. Gemini streams have no end event of
// their own: the stream ends after the last chunk, and NoDone changes
// nothing.
func GeminiChunks(model string, texts ...string) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		finish := ""
		if i == len(texts)-1 {
			finish = "STOP"
		}
		out[i] = geminiResponse(model, i+1, geminiCandidate(t, finish))
	}
	return out
}

// GeminiStream returns a scripted Gemini stream whose chunks' texts are texts.
func GeminiStream(texts ...string) Response {
	return Response{Chunks: GeminiChunks("", texts...)}
}

// GeminiErrorBody returns a Google API error body. status is the
// google.rpc.Code name (INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND,
// RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, ...); details, if any, are
// the "details" array (each with its "@type").
func GeminiErrorBody(code int, status, message string, details ...map[string]any) string {
	e := map[string]any{"code": code, "message": message, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

// GeminiError returns a scripted error answer with a Google API error body
// whose code is the HTTP status.
func GeminiError(code int, status, message string, details ...map[string]any) Response {
	return Response{Status: code, Body: GeminiErrorBody(code, status, message, details...)}
}

// GeminiRateLimited returns Gemini's 429 RESOURCE_EXHAUSTED for a
// per-minute limit, with a google.rpc.QuotaFailure and a
// google.rpc.RetryInfo whose retryDelay is retryDelay ("20s"). Google
// sends no Retry-After header: the hint is in the body.
func GeminiRateLimited(retryDelay time.Duration) Response {
	return GeminiError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
		"Resource has been exhausted: requests per minute per model exceeded.",
		map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
			"violations": []any{map[string]any{
				"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
				"quotaId":     "GenerateRequestsPerMinutePerProjectPerModel",
				"quotaValue":  "60",
			}}},
		map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo",
			"retryDelay": strconv.FormatFloat(retryDelay.Seconds(), 'f', -1, 64) + "s"})
}

// GeminiUnauthorized returns Gemini's answer to a revoked or wrong key: a
// 400 INVALID_ARGUMENT whose google.rpc.ErrorInfo reason is API_KEY_INVALID.
func GeminiUnauthorized() Response {
	return GeminiError(http.StatusBadRequest, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
		map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
			"domain": "googleapis.com", "metadata": map[string]any{"service": "generativelanguage.googleapis.com"}})
}

// GeminiOverloaded returns Gemini's 503 UNAVAILABLE for an overloaded model.
func GeminiOverloaded() Response {
	return GeminiError(http.StatusServiceUnavailable, "UNAVAILABLE", "The model is overloaded. Please try again later.")
}
