package faultserver

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rawRequest sends a chat-completion request on a new connection and
// returns the connection, unread.
func rawRequest(t *testing.T, s *Server, stream bool) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"model":"m","stream":%v}`, stream)
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitIdle(t *testing.T, s *Server, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for s.Active() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers still running %v later", s.Active(), bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every handler ends when its client goes away and when the server
// closes, even if the client never reads; no goroutine is left.
func TestHandlersEnd(t *testing.T) {
	modes := append([]Mode{Healthy, Echo}, Faults()...)
	for _, mode := range modes {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", mode, stream), func(t *testing.T) {
				base := runtime.NumGoroutine()
				s := Start(Config{Mode: mode, HugeSize: 64 << 20, TrickleInterval: time.Millisecond})
				c := rawRequest(t, s, stream)
				deadline := time.Now().Add(2 * time.Second)
				for s.Calls() == 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				_ = c.Close() // the client goes away without reading
				waitIdle(t, s, 2*time.Second)

				c = rawRequest(t, s, stream) // this one stays, unread
				defer c.Close()
				for s.Calls() < 2 && time.Now().Before(deadline.Add(2*time.Second)) {
					time.Sleep(time.Millisecond)
				}
				start := time.Now()
				s.Close()
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Close took %v", d)
				}
				if n := s.Active(); n != 0 {
					t.Errorf("%d handlers running after Close", n)
				}
				_ = c.Close()
				deadline = time.Now().Add(2 * time.Second)
				for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if n := runtime.NumGoroutine(); n > base {
					t.Errorf("%d goroutines after Close, %d before", n, base)
				}
			})
		}
	}
}

// The modes answer as documented, as a plain HTTP client sees them.
func TestModes(t *testing.T) {
	get := func(t *testing.T, mode Mode, stream bool) (*http.Response, error) {
		s := Start(Config{Mode: mode, HugeSize: 1 << 20, Hold: time.Second})
		t.Cleanup(s.Close)
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr, Timeout: 500 * time.Millisecond}
		return c.Post(s.BaseURL()+"/chat/completions", "application/json",
			strings.NewReader(fmt.Sprintf(`{"model":"m","stream":%v}`, stream)))
	}
	for _, mode := range []Mode{CloseBeforeResponse, Garbage, StallBeforeHeaders} {
		if resp, err := get(t, mode, false); err == nil {
			_ = resp.Body.Close()
			t.Errorf("%s: a response, status %d", mode, resp.StatusCode)
		}
	}
	resp, err := get(t, HTTP10CloseDelimited, true)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.ProtoMinor != 0 || resp.ContentLength != -1 {
		t.Errorf("HTTP/1.0 close-delimited: got %s, Content-Length %d", resp.Proto, resp.ContentLength)
	}
	sc := bufio.NewScanner(resp.Body)
	var last string
	for sc.Scan() {
		if sc.Text() != "" {
			last = sc.Text()
		}
	}
	if last != "data: [DONE]" {
		t.Errorf("last event %q", last)
	}
}
