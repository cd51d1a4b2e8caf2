package failover

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The status page: what StatusHandler serves to a client that asks for
// text/html. It is one self-contained document: its style and script are
// constants inlined here, allowed by their hashes in the
// Content-Security-Policy, and it loads nothing else. The pool's data goes
// in as JSON inside a <script type="application/json"> block (never run,
// and encoding/json escapes '<', '>' and '&', so no text in it can close
// the block), and the script builds every row with textContent, so a
// provider's error message is shown as text, never parsed as markup. The
// script then fetches the same URL with Accept: application/json every two
// seconds and updates the rows in place.

// nowHeader carries the pool's clock on StatusHandler's answers, so the page
// counts cooldowns down from the pool's time, not the browser's.
const nowHeader = "X-Failover-Now"

// wantsHTML reports whether an Accept header prefers text/html to
// application/json: text/html's quality (from its most specific matching
// range: text/html, then text/*, then */*) must be above zero and above
// application/json's. A tie goes to JSON, so "*/*", no header and
// "application/json, text/html" keep the JSON, while a browser's
// "text/html,...,*/*;q=0.8" gets the page.
func wantsHTML(accept []string) bool {
	page, data := acceptQ(accept, "text", "html"), acceptQ(accept, "application", "json")
	return page > 0 && page > data
}

// acceptQ returns the quality an Accept header gives typ/sub: that of the
// most specific range that matches it, 0 when none does. A range whose q
// does not parse is ignored.
func acceptQ(accept []string, typ, sub string) float64 {
	q, best := 0.0, -1
	for _, v := range accept {
		for _, r := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(r))
			if err != nil {
				// "*/*" alone, "text/*" and the like parse; anything
				// that does not is no media range.
				continue
			}
			t, s, _ := strings.Cut(mt, "/")
			spec := -1
			switch {
			case t == typ && s == sub:
				spec = 2
			case t == typ && s == "*":
				spec = 1
			case t == "*" && (s == "*" || s == ""): // "*" is an old "*/*"
				spec = 0
			}
			if spec <= best {
				continue
			}
			rq := 1.0
			if qs, ok := params["q"]; ok {
				f, err := strconv.ParseFloat(qs, 64)
				if err != nil || f < 0 || f > 1 {
					continue
				}
				rq = f
			}
			q, best = rq, spec
		}
	}
	return q
}

// statusNow reads p's clock; a nil pool has the wall clock.
func statusNow[C any](p *Pool[C]) time.Time {
	if p == nil {
		return time.Now()
	}
	return p.now()
}

// pageData is the JSON the page starts from: the pool's time and its
// members. Later refreshes read the pool's time from nowHeader.
type pageData struct {
	Now    time.Time `json:"now"`
	Status []Status  `json:"status"`
}

// serveStatusPage writes the status page of sts, a snapshot taken at now.
func serveStatusPage(w http.ResponseWriter, sts []Status, now time.Time) {
	if sts == nil {
		sts = []Status{}
	}
	var buf bytes.Buffer
	buf.Grow(len(pageHead) + len(pageTail) + 512*len(sts))
	buf.WriteString(pageHead)
	enc := json.NewEncoder(&buf) // escapes <, > and &: nothing closes the block
	if err := enc.Encode(pageData{Now: now.UTC(), Status: sts}); err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	buf.WriteString(pageTail)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}

// cspHash returns the CSP source of an inline element's text.
func cspHash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// pageCSP forbids every load but the page's own refreshes (connect-src
// 'self') and runs only the page's own style and script, by hash: no
// 'unsafe-inline', no external script, style, font or image, no frames, no
// forms. Trusted Types are required and none are allowed, so in a browser
// that enforces them no string can reach innerHTML or another DOM sink.
var pageCSP = "default-src 'none'; script-src " + cspHash(pageScript) +
	"; style-src " + cspHash(pageStyle) +
	"; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" +
	"; require-trusted-types-for 'script'; trusted-types 'none'"

const pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="robots" content="noindex">
<title>failover · pool status</title>
<link rel="icon" href="data:,">
<style>` + pageStyle + `</style>
</head>
<body>
<header>
<h1>Pool status</h1>
<p id="summary" class="summary" aria-live="polite"></p>
<p id="updated" class="updated"></p>
</header>
<main>
<table id="members">
<thead><tr><th scope="col">Member</th><th scope="col">State</th><th scope="col">Reason</th><th scope="col">Time left</th><th scope="col" class="num">Requests</th><th scope="col" class="num">Failures</th><th scope="col" class="num">Skipped</th><th scope="col" class="num">Tokens</th><th scope="col">Last error</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<p id="empty" class="empty" hidden>No members.</p>
<noscript><p class="empty">This page needs JavaScript. API clients: ask this URL with Accept: application/json.</p></noscript>
</main>
<footer>Refreshes every 2 s. The same URL answers <code>Accept: application/json</code> with the JSON of the pool's status.</footer>
<script type="application/json" id="status-data">`

const pageTail = `</script>
<script>` + pageScript + `</script>
</body>
</html>
`

const pageStyle = `
:root{--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--active:#1a7f37;--cooling:#9a6700;--probing:#0969da;--disabled:#cf222e;--other:#59636e;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px;line-height:1.4}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#151b23;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;
--active:#3fb950;--cooling:#d29922;--probing:#4493f8;--disabled:#f85149}}
*{box-sizing:border-box}
body{margin:0;padding:16px;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px;margin-bottom:12px}
h1{font-size:1.3rem;margin:0}
.summary{margin:0;font-weight:600}
.updated{margin:0;color:var(--muted);font-size:.85rem}
.updated.stale{color:var(--disabled);font-weight:600}
.updated::before{content:"";display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--active);margin-right:6px;vertical-align:middle}
.updated.stale::before{background:var(--disabled)}
table{width:100%;border-collapse:separate;border-spacing:0;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{padding:8px 10px;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
tbody tr:last-child td{border-bottom:0}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);background:var(--bg)}
.num{text-align:right;font-variant-numeric:tabular-nums}
td:first-child{border-left:4px solid var(--c,var(--other))}
tr[data-state=active]{--c:var(--active)}
tr[data-state=cooling_down]{--c:var(--cooling)}
tr[data-state=probing]{--c:var(--probing)}
tr[data-state=disabled]{--c:var(--disabled)}
.name{font-weight:600;word-break:break-word}
.sub{display:block;color:var(--muted);font-size:.8rem;font-weight:400}
.pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-weight:600;font-size:.85rem;color:var(--c,var(--other));border:1px solid var(--c,var(--other));white-space:nowrap}
.pill::before{content:"";width:8px;height:8px;border-radius:50%;background:var(--c,var(--other))}
.left{font-variant-numeric:tabular-nums;white-space:nowrap}
.err{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.8rem;white-space:pre-wrap;word-break:break-word;max-width:38ch;max-height:6.5em;overflow:auto;margin:0}
.none{color:var(--muted)}
.err.none{font-family:inherit;font-size:inherit}
.empty{color:var(--muted)}
footer{margin-top:12px;color:var(--muted);font-size:.8rem}
code{font-size:.9em}
@media (max-width:600px){
body{padding:10px}
table,thead,tbody,tr,td{display:block;border:0;background:none}
table{border:0}
thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
tr{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--c,var(--other));border-radius:8px;margin:0 0 10px;padding:6px 12px}
td,td:first-child{display:flex;justify-content:space-between;align-items:baseline;gap:12px;padding:4px 0;border:0;text-align:right}
td::before{content:attr(data-label);color:var(--muted);font-size:.8rem;text-align:left;flex:none}
.val{min-width:0}
td.member{display:block;text-align:left;font-size:1.05rem;padding-bottom:6px}
td.member::before{content:none}
td.error{display:block;text-align:left}
td.error::before{display:block;margin-bottom:2px}
.err{max-width:none}
}
`

const pageScript = `
(function () {
  'use strict';
  var REFRESH_MS = 2000;
  var WORDS = {active: 'active', cooling_down: 'cooling down', probing: 'probing', disabled: 'disabled'};
  var COLUMNS = ['Member', 'State', 'Reason', 'Time left', 'Requests', 'Failures', 'Skipped', 'Tokens', 'Last error'];
  var tbody = document.getElementById('rows');
  var summary = document.getElementById('summary');
  var updated = document.getElementById('updated');
  var empty = document.getElementById('empty');
  var rows = new Map(); // member name -> row
  var lastOK = 0;

  function num(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '\u2014'; }

  function dur(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    s = s % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + (m < 10 ? '0' : '') + m + 'm';
    if (m > 0) return m + 'm ' + (s < 10 ? '0' : '') + s + 's';
    return s + 's';
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }

  // set writes text as the node's only text: textContent, never markup.
  function set(node, text) {
    text = text == null ? '' : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function part(parent, tag, cls) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    parent.appendChild(n);
    return n;
  }

  function makeRow() {
    var tr = document.createElement('tr');
    var v = COLUMNS.map(function (label, i) {
      var c = part(tr, 'td', ['member', 'state', 'reason', 'left', 'num', 'num', 'num', 'num tokens', 'error'][i]);
      c.setAttribute('data-label', label);
      return part(c, 'div', 'val');
    });
    var r = {tr: tr, deadline: null, dayEnd: null, state: '', tokenKey: null};
    r.name = part(v[0], 'span', 'name');
    r.model = part(v[0], 'span', 'sub');
    r.pill = part(v[1], 'span', 'pill');
    r.reason = part(v[2], 'span', '');
    r.left = part(v[3], 'span', 'left');
    r.leftSub = part(v[3], 'span', 'sub');
    r.day = part(v[3], 'span', 'sub');
    r.requests = part(v[4], 'span', '');
    r.requestsSub = part(v[4], 'span', 'sub');
    r.failures = part(v[5], 'span', '');
    r.failuresSub = part(v[5], 'span', 'sub');
    r.skipped = part(v[6], 'span', '');
    r.skippedSub = part(v[6], 'span', 'sub');
    r.tokens = v[7];
    r.error = part(v[8], 'p', 'err');
    return r;
  }

  // tokenParts lists the member's token counters that are present, as
  // [value, label] pairs: every top-level numeric field whose name has
  // "tokens" in it, so counters the Status gains later show up without a
  // change here.
  function tokenParts(s) {
    var out = [];
    Object.keys(s).forEach(function (k) {
      if (!/tokens/.test(k) || typeof s[k] !== 'number') return;
      var label = k.replace(/_?tokens_?/, ' ').replace(/_/g, ' ').trim();
      var tpd = k === 'tokens_today' && s.limits && s.limits.tpd;
      if (s[k] === 0 && !tpd) return;
      out.push([num(s[k]), (tpd ? 'of ' + num(s.limits.tpd) + ' ' : '') + label]);
    });
    return out;
  }

  // showTokens rebuilds the tokens cell when its counters change: the first
  // as the main figure, each with its label below.
  function showTokens(r, parts) {
    var key = JSON.stringify(parts);
    if (key === r.tokenKey) return;
    r.tokenKey = key;
    if (!parts.length) parts = [['\u2014', '']];
    var nodes = [];
    parts.forEach(function (p, i) {
      var main = document.createElement('span');
      main.className = i === 0 ? '' : 'sub';
      main.textContent = i === 0 ? p[0] : p[0] + ' ' + p[1];
      nodes.push(main);
      if (i === 0 && p[1]) {
        var sub = document.createElement('span');
        sub.className = 'sub';
        sub.textContent = p[1];
        nodes.push(sub);
      }
    });
    r.tokens.replaceChildren.apply(r.tokens, nodes);
  }

  function update(r, s, serverNow, at) {
    var state = typeof s.state === 'string' ? s.state : 'unknown';
    r.state = state;
    if (r.tr.getAttribute('data-state') !== state) r.tr.setAttribute('data-state', state);
    r.tr.setAttribute('data-name', s.name);
    set(r.name, s.name);
    var lacks = Array.isArray(s.lacks) && s.lacks.length ? 'lacks ' + s.lacks.join(', ') : '';
    set(r.model, [s.model, 'priority ' + s.priority, lacks].filter(Boolean).join(' \u00b7 '));
    set(r.pill, WORDS[state] || state);
    set(r.reason, s.reason || '\u2014');
    r.reason.classList.toggle('none', !s.reason);

    var until = s.until ? Date.parse(s.until) : NaN;
    r.deadline = state === 'cooling_down' && !isNaN(until) ? at + (until - serverNow) : null;
    var dayEnd = s.day_ends ? Date.parse(s.day_ends) : NaN;
    r.dayEnd = !isNaN(dayEnd) && s.limits && (s.limits.rpd || s.limits.tpd) ? at + (dayEnd - serverNow) : null;
    tick1(r, at);

    set(r.requests, num(s.requests));
    var rs = [];
    if (s.limits && s.limits.rpd) rs.push(num(s.requests_today || 0) + ' of ' + num(s.limits.rpd) + ' today');
    if (s.in_flight) rs.push(num(s.in_flight) + ' in flight');
    if (s.served) rs.push(num(s.served) + ' served');
    if (s.hedged) rs.push(num(s.hedged) + ' hedged');
    set(r.requestsSub, rs.join(' \u00b7 '));
    set(r.failures, num(s.failures));
    set(r.failuresSub, s.consecutive_failures ? num(s.consecutive_failures) + ' in a row' : '');
    // Calls that passed the member over, by cause.
    var sk = s.skipped || {}, causes = [[sk.cooling, 'cooling'], [sk.probing, 'probing'], [sk.disabled, 'disabled'], [s.limited, 'limited'], [sk.model, 'lacking the model']];
    var total = 0, ks = [];
    causes.forEach(function (c) {
      if (typeof c[0] === 'number' && c[0] > 0) { total += c[0]; ks.push(num(c[0]) + ' ' + c[1]); }
    });
    set(r.skipped, num(total));
    set(r.skippedSub, ks.join(' \u00b7 '));
    showTokens(r, tokenParts(s));
    set(r.error, s.last_error || '\u2014');
    r.error.classList.toggle('none', !s.last_error);
  }

  // tick1 redraws a row's time left from the browser's monotonic clock.
  function tick1(r, now) {
    if (r.deadline !== null) {
      var ms = r.deadline - now;
      set(r.left, ms > 0 ? dur(ms) : 'probe due');
      set(r.leftSub, 'until ' + clock(Date.now() + Math.max(0, ms)));
    } else {
      set(r.left, r.state === 'disabled' ? 'until Enable' : r.state === 'probing' ? 'probe in flight' : '\u2014');
      set(r.leftSub, '');
    }
    r.left.classList.toggle('none', r.deadline === null && r.state !== 'disabled' && r.state !== 'probing');
    set(r.day, r.dayEnd !== null ? 'day resets in ' + dur(r.dayEnd - now) : '');
  }

  function tick() {
    var now = performance.now();
    rows.forEach(function (r) { tick1(r, now); });
    if (lastOK) {
      var ago = Math.round((Date.now() - lastOK) / 1000);
      var stale = ago > 3 * REFRESH_MS / 1000;
      updated.classList.toggle('stale', stale);
      set(updated, (stale ? 'Not updating: last update ' : 'Live \u00b7 updated ') + clock(lastOK) + (stale ? ' (' + dur(ago * 1000) + ' ago)' : ''));
    }
  }

  function render(list, serverNow, at) {
    if (!Array.isArray(list)) list = [];
    var seen = new Set();
    var counts = {};
    var i = 0;
    list.forEach(function (s) {
      if (!s || typeof s.name !== 'string' || seen.has(s.name)) return;
      seen.add(s.name);
      var r = rows.get(s.name);
      if (!r) { r = makeRow(); rows.set(s.name, r); }
      update(r, s, serverNow, at);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
      i++;
      counts[r.state] = (counts[r.state] || 0) + 1;
    });
    rows.forEach(function (r, name) {
      if (!seen.has(name)) { r.tr.remove(); rows.delete(name); }
    });
    empty.hidden = rows.size > 0;
    var parts = [(counts.active || 0) + ' of ' + rows.size + ' serving'];
    ['cooling_down', 'probing', 'disabled'].forEach(function (k) {
      if (counts[k]) parts.push(counts[k] + ' ' + WORDS[k]);
    });
    set(summary, parts.join(' \u00b7 '));
    lastOK = Date.now();
    document.documentElement.setAttribute('data-refreshed', String((Number(document.documentElement.getAttribute('data-refreshed')) || 0) + 1));
    tick();
  }

  function poll() {
    var at;
    fetch(location.href, {headers: {Accept: 'application/json'}, cache: 'no-store', credentials: 'same-origin'})
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        at = performance.now();
        var now = Date.parse(res.headers.get('X-Failover-Now') || '');
        return res.json().then(function (list) { render(list, isNaN(now) ? Date.now() : now, at); });
      })
      .catch(function () { tick(); })
      .then(function () { setTimeout(poll, REFRESH_MS); });
  }

  var start = {};
  try { start = JSON.parse(document.getElementById('status-data').textContent); } catch (e) { start = {}; }
  render(start.status, Date.parse(start.now) || Date.now(), performance.now());
  setInterval(tick, 500);
  setTimeout(poll, REFRESH_MS);
})();
`
