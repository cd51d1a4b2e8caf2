package failover_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/llmfailover/failover"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// canaries are fake keys in every shape a key can leak in.
var canaries = []struct {
	key string
	err error
}{
	{"sk-proj-CANARYcanary0123456789abcdef", apiErr(401, "invalid_api_key", "Incorrect API key provided: sk-proj-CANARYcanary0123456789abcdef. You can find your API key at https://platform.openai.com/account/api-keys.")},
	{"sk-ant-api03-CANARYcanary0123456789", apiErr(401, nil, "invalid x-api-key: sk-ant-api03-CANARYcanary0123456789")},
	{"AIzaSyCANARYcanary0123456789abcdefghi", &url.Error{Op: "Post", URL: "https://generativelanguage.googleapis.com/v1beta/models/gemini:generateContent?key=AIzaSyCANARYcanary0123456789abcdefghi", Err: errors.New("connection reset by peer")}},
	{"my-own-secret-CANARY-1", &url.Error{Op: "Get", URL: "https://proxy.example.com/v1/models?api_key=my-own-secret-CANARY-1&x=1", Err: errors.New("EOF")}},
	{"eyJCANARYtoken.payload.sig", errors.New(`status code: 502, upstream echoed header "Authorization: Bearer eyJCANARYtoken.payload.sig"`)},
	{"gsk_CANARYcanary0123456789", &openai.RequestError{HTTPStatusCode: 503, HTTPStatus: "503", Body: []byte(`{"error":"bad key gsk_CANARYcanary0123456789"}`)}},
	{"proxy-CANARY-pass-0002", &url.Error{Op: "Post", URL: "https://user:proxy-CANARY-pass-0002@proxy.example.com/v1/chat/completions", Err: errors.New("EOF")}},
	{"azure-CANARY-key-0001", errors.New(`request had {"api-key": "azure-CANARY-key-0001"} and failed: 503 Service Unavailable`)},
}

// No key appears in Error(), Status, status JSON, events or log lines;
// errors.As still reaches the original error.
func TestSecretsNeverLeak(t *testing.T) {
	var ev events
	var logs bytes.Buffer
	clients := make([]*fakeClient, len(canaries))
	for i, c := range canaries {
		clients[i] = &fakeClient{fail: always(c.err)}
	}
	p := newPool(t, members(clients...), failover.WithObserver(ev.observe),
		failover.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	_, err := failover.Do(ctx, p, call)
	require.ErrorIs(t, err, failover.ErrExhausted)
	_, err2 := failover.Do(ctx, p, call) // cooling, blips probed once more, one last resort
	var fe *failover.Error
	require.ErrorAs(t, err2, &fe)

	statusJSON, jerr := json.Marshal(p.Status())
	require.NoError(t, jerr)
	var texts []string
	texts = append(texts, err.Error(), err2.Error(), string(statusJSON), logs.String())
	for _, s := range p.Status() {
		texts = append(texts, s.LastError)
	}
	for _, e := range ev.all {
		if e.Err != nil {
			texts = append(texts, e.Err.Error(), fmt.Sprint(e))
		}
	}
	for _, c := range canaries {
		for _, text := range texts {
			require.NotContains(t, text, c.key)
		}
	}
	assert.Contains(t, err.Error(), "[REDACTED]")
	assert.NotEmpty(t, logs.String())

	var ue *url.Error
	require.ErrorAs(t, err, &ue, "the original error stays reachable")
	assert.True(t, strings.Contains(ue.URL, "key="))
}
