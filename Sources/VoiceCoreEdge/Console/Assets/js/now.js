// The *Now* page, live: calls appear in #calls-now when they start (voicecore.call.started),
// change status when answered, and move to #calls-recent when they end, from the tenant's event
// feed (GET /v1/events, authenticated by the console's session cookie). Every value an event
// carries is written with textContent: a caller's number or anything else in an event is text,
// never markup. Without this script the page still shows the calls as of its load.

const running = document.getElementById('calls-now');
const recent = document.getElementById('calls-recent');
const empty = document.getElementById('calls-now-empty');
const live = document.getElementById('now-live');
const recentLimit = 10;

const timeZone = running?.dataset.timeZone || undefined;
let timeFormat;
try {
  timeFormat = new Intl.DateTimeFormat('en-GB', { timeZone, day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
} catch {
  timeFormat = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
}

function formatTime(text) {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? '' : timeFormat.format(date);
}

function formatDuration(seconds) {
  if (typeof seconds !== 'number' || seconds < 0) return '';
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return minutes > 0 ? `${minutes} min ${rest} s` : `${rest} s`;
}

function findRow(table, callId) {
  for (const row of table.tBodies[0].rows) {
    if (row.dataset.callId === callId) return row;
  }
  return null;
}

function cell(row, className, text) {
  const td = document.createElement('td');
  td.className = className;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function linkCell(row, callId, text) {
  const td = document.createElement('td');
  td.className = 'call-started';
  const a = document.createElement('a');
  a.href = '/app/calls/' + encodeURIComponent(callId);
  a.textContent = text || 'Call';
  td.appendChild(a);
  row.appendChild(td);
}

function setCell(row, className, text) {
  const td = row.querySelector('td.' + className);
  if (td) td.textContent = text;
}

function updateEmpty() {
  if (empty) empty.hidden = running.tBodies[0].rows.length > 0;
}

function announce(text) {
  if (live) live.textContent = text;
}

function started(data) {
  if (!data.call_id || findRow(running, data.call_id) || (recent && findRow(recent, data.call_id))) return;
  const row = document.createElement('tr');
  row.dataset.callId = data.call_id;
  linkCell(row, data.call_id, formatTime(data.started_at));
  cell(row, 'call-from', data.from || '');
  cell(row, 'call-to', data.to || '');
  cell(row, 'call-direction', data.direction || '');
  cell(row, 'call-status', 'ringing');
  running.tBodies[0].prepend(row);
  updateEmpty();
  announce(`Call from ${data.from || 'an unknown number'} started`);
}

function answered(data) {
  const row = data.call_id && findRow(running, data.call_id);
  if (row) setCell(row, 'call-status', 'in progress');
}

function ended(data) {
  if (!data.call_id) return;
  const row = findRow(running, data.call_id);
  if (row) row.remove();
  updateEmpty();
  if (!recent || findRow(recent, data.call_id)) return;
  const done = document.createElement('tr');
  done.dataset.callId = data.call_id;
  const startedText = row?.querySelector('td.call-started a')?.textContent || formatTime(data.ended_at);
  linkCell(done, data.call_id, startedText);
  cell(done, 'call-from', row?.querySelector('td.call-from')?.textContent || '');
  cell(done, 'call-to', row?.querySelector('td.call-to')?.textContent || '');
  cell(done, 'call-status', data.status || '');
  cell(done, 'call-duration', formatDuration(data.duration_seconds));
  recent.tBodies[0].prepend(done);
  while (recent.tBodies[0].rows.length > recentLimit) recent.tBodies[0].lastElementChild.remove();
  announce(`Call ${row ? 'from ' + (row.querySelector('td.call-from')?.textContent || '') + ' ' : ''}ended: ${data.status || ''}`);
}

const handlers = {
  'voicecore.call.started': started,
  'voicecore.call.answered': answered,
  'voicecore.call.ended': ended,
};

if (running && typeof EventSource === 'function') {
  const source = new EventSource('/v1/events?types=' + Object.keys(handlers).join(','));
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event && typeof event.data === 'object' && event.data !== null) handle(event.data);
    });
  }
}
