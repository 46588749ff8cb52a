// The edge's request and publish rates on the operator's overview (/app/operator): polls
// /app/operator/rates.json every 2 s (cumulative counters and a monotonic time in ms) and writes
// the per-second rates between two readings. Text only (textContent); the page works without it,
// showing the totals.

const intervalMs = 2000;

function reading(source) {
  const requests = Number(source.requests);
  const publishes = Number(source.publishes);
  const monotonicMs = Number(source.monotonic_ms ?? source.monotonicMs);
  if (![requests, publishes, monotonicMs].every(Number.isFinite)) return null;
  return { requests, publishes, monotonicMs };
}

function formatRate(perSecond) {
  if (!Number.isFinite(perSecond) || perSecond < 0) return "—";
  if (perSecond >= 100) return Math.round(perSecond).toLocaleString("en-US");
  return perSecond.toFixed(1);
}

function start() {
  const panel = document.getElementById("edge-rates");
  const requestsRate = document.getElementById("edge-requests-rate");
  const publishesRate = document.getElementById("edge-publishes-rate");
  const requestsTotal = document.getElementById("edge-requests-total");
  const publishesTotal = document.getElementById("edge-publishes-total");
  if (!panel || !requestsRate || !publishesRate) return;

  // The page's own reading (rendered with it) is the first one.
  let last = reading({
    requests: panel.dataset.requests,
    publishes: panel.dataset.publishes,
    monotonic_ms: panel.dataset.monotonicMs,
  });

  async function poll() {
    let next = null;
    try {
      const response = await fetch("/app/operator/rates.json", {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.startsWith("application/json")) next = reading(await response.json());
    } catch {
      next = null;
    }
    if (!next) {
      // Signed out, or the edge did not answer: say so rather than show a stale rate.
      requestsRate.textContent = "—";
      publishesRate.textContent = "—";
      return;
    }
    // A counter that went down is another edge process (restarted): start over from this reading.
    if (last && next.monotonicMs > last.monotonicMs && next.requests >= last.requests && next.publishes >= last.publishes) {
      const seconds = (next.monotonicMs - last.monotonicMs) / 1000;
      requestsRate.textContent = formatRate((next.requests - last.requests) / seconds);
      publishesRate.textContent = formatRate((next.publishes - last.publishes) / seconds);
    }
    if (requestsTotal) requestsTotal.textContent = next.requests.toLocaleString("en-US");
    if (publishesTotal) publishesTotal.textContent = next.publishes.toLocaleString("en-US");
    last = next;
  }

  setInterval(poll, intervalMs);
}

start();
