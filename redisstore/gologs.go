package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/llmfailover/failover/internal/redact"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// SetGoRedisLogger sends go-redis's own log lines (a failed dial, a line a
// second or more per client while Redis is down; a Sentinel failover; a
// connection pool panic it recovered) to l at level Warn, redacted: the
// userinfo of any URL (a Redis password) and the API key shapes failover
// redacts everywhere are replaced by "[REDACTED]". With nil, go-redis logs
// nothing at all.
//
// Without it go-redis prints those lines to the standard error with the
// log package, past the store's logger ([WithLogger]) and unredacted: an
// address mistyped as a URL puts its password in the dial error.
//
// It is not the store's default because go-redis has one logger for the
// whole process: SetGoRedisLogger changes what every go-redis client in
// the process logs, the store's or not. go-redis reads that logger without
// synchronisation, so call SetGoRedisLogger once, at start-up, before any
// go-redis client is created.
//
// Warn is the level because go-redis has a single logging call for
// everything and uses it only when something went wrong; the store's own
// message about an outage is at Warn too. A handler set to Error hides
// them; nil drops them.
func SetGoRedisLogger(l *slog.Logger) {
	if l == nil {
		redis.SetLogger(&logging.VoidLogger{})
		return
	}
	redis.SetLogger(goRedisLogger{l})
}

// goRedisLogger is go-redis's Logging interface over a slog logger.
type goRedisLogger struct{ l *slog.Logger }

// maxGoRedisLine bounds a line: go-redis may quote a whole notification.
const maxGoRedisLine = 2 << 10

// Printf logs one go-redis line at Warn, redacted.
func (g goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !g.l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	line := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	g.l.Log(ctx, slog.LevelWarn, "go-redis: "+redactLine(line))
}

// redactLine removes credentials (URL userinfo included) from a line, and
// bounds it.
func redactLine(s string) string {
	margin := 256 // cut first, leaving room so that a secret cut in two is still found
	if len(s) > maxGoRedisLine+margin {
		s = s[:maxGoRedisLine+margin]
	}
	return redact.Truncate(redact.String(s), maxGoRedisLine)
}
