// Package browsertest tests failover's status page in a real headless
// Chromium, driven by chromedp. It is its own module so that the core module
// does not depend on chromedp; it has no code of its own.
//
// Run it from this directory with `go test ./...`. It needs a Chromium or
// Chrome binary: FAILOVER_CHROMIUM names one, else chromium, chromium-browser,
// google-chrome or google-chrome-stable on PATH. Without one the test skips,
// unless FAILOVER_REQUIRE_CHROMIUM=1 (as in CI) makes that a failure.
// FAILOVER_SCREENSHOT=path saves a screenshot of the page, and
// FAILOVER_SCREENSHOT_PHONE=path one at a phone's width.
package browsertest
