"""The web app's pages (``simsearch serve``): plain HTML rendered on the server, so every list reads with
JavaScript off, and a little JavaScript for what needs it (dropping a query image, moving files aside, undo).
Images are shown through the API's thumbnails, by image id only."""

from __future__ import annotations

import html
import json

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { background: #234; padding: .6em 1.5em; } nav a { color: #fff; margin-right: 1.2em; text-decoration: none; }
main { padding: 1em 1.5em; } h1 { font-size: 1.3em; } .meta { color: #666; }
section { border-top: 1px solid #ddd; padding: .8em 0; } h2 { font-size: 1em; margin: 0 0 .5em; }
.row { display: flex; flex-wrap: wrap; gap: .7em; }
figure { margin: 0; width: 180px; font-size: .75em; word-break: break-all; }
figure.keep img { outline: 3px solid #2a7; } img { display: block; max-width: 176px; max-height: 176px; }
#drop { border: 2px dashed #89a; padding: 1.2em; margin: .8em 0; color: #567; }
#drop.over { background: #eef; } .done { color: #2a7; } .error { color: #a33; }
button { margin-top: .4em; }
"""

# the token comes once in the address (?token=...) and is kept for the tab's session
_SCRIPT = """
const params = new URLSearchParams(location.search);
if (params.get('token')) sessionStorage.setItem('simsearch-token', params.get('token'));
function token() {
  let t = sessionStorage.getItem('simsearch-token');
  if (!t) { t = prompt('Token printed by simsearch serve'); if (t) sessionStorage.setItem('simsearch-token', t); }
  return t;
}
async function post(url, body) {
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json',
                              'Authorization': 'Bearer ' + token()}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}
"""

_SEARCH_SCRIPT = """
const drop = document.getElementById('drop');
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over'); search(e.dataTransfer.files); });
document.getElementById('image').addEventListener('change', e => search(e.target.files));
async function search(files) {
  const form = new FormData();
  for (const f of files) form.append('image', f);
  for (const box of document.querySelectorAll('input[name=tags]:checked')) form.append('tags', box.value);
  const r = await fetch('/api/search', {method: 'POST', body: form});
  const data = await r.json();
  const out = document.getElementById('results');
  out.innerHTML = '';
  if (!r.ok) { out.innerHTML = '<p class="error"></p>'; out.firstChild.textContent = data.detail; return; }
  for (const res of data.results) {
    const sec = document.createElement('section');
    const h = document.createElement('h2'); h.textContent = res.query; sec.appendChild(h);
    const row = document.createElement('div'); row.className = 'row';
    if (res.error) { row.textContent = res.error; row.className = 'error'; }
    for (const m of res.matches || []) row.appendChild(figure(m.image, data.by + ' ' + m.score));
    sec.appendChild(row); out.appendChild(sec);
  }
}
function figure(image, caption) {
  const f = document.createElement('figure');
  const a = document.createElement('a'); a.href = '/api/images/' + image.id + '/file';
  const img = document.createElement('img'); img.src = '/api/images/' + image.id + '/thumbnail'; img.alt = image.path;
  a.appendChild(img); f.appendChild(a);
  const c = document.createElement('figcaption'); c.textContent = image.path + ' ' + caption; f.appendChild(c);
  return f;
}
"""

_DUPLICATES_SCRIPT = """
for (const sec of document.querySelectorAll('section[data-group]')) {
  const status = sec.querySelector('.status');
  sec.querySelector('.move').addEventListener('click', async () => {
    const ids = [...sec.querySelectorAll('input[type=radio]')].map(r => +r.value);
    const keeper = +sec.querySelector('input[type=radio]:checked').value;
    try {
      const done = await post('/api/moves', {keeper, move: ids.filter(i => i !== keeper)});
      status.className = 'status done';
      status.textContent = 'Moved ' + done.moved + ' files aside (' + done.manifest + '). '
        + done.skipped.map(s => 'Left ' + s.path + ' in place: ' + s.reason + '. ').join('');
      const undo = document.createElement('button'); undo.className = 'undo'; undo.textContent = 'Undo';
      undo.addEventListener('click', async () => {
        const back = await post('/api/undo', {manifest: done.manifest});
        status.textContent = 'Moved ' + back.moved_back + ' files back.';
      });
      status.appendChild(undo);
    } catch (err) { status.className = 'status error'; status.textContent = err.message; }
  });
}
"""


def _layout(title: str, body: str, script: str = "") -> str:
    nav = ('<nav><a href="/">Search</a><a href="/duplicates">Duplicates</a><a href="/clusters">Clusters</a>'
           '<a href="/docs">API</a></nav>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - simsearch'
            f'</title><style>{_STYLE}</style></head><body>{nav}<main><h1>{html.escape(title)}</h1>{body}</main>'
            f"<script>{_SCRIPT}{script}</script></body></html>")


def _figure(image: dict, caption: str, extra: str = "", keep: bool = False) -> str:
    klass = ' class="keep"' if keep else ""
    alt = html.escape(image["path"], quote=True)
    return (f'<figure{klass}><a href="/api/images/{image["id"]}/file"><img src="/api/images/{image["id"]}/thumbnail"'
            f' alt="{alt}" loading="lazy"></a><figcaption>{extra}{html.escape(image["path"])}<br>'
            f"{html.escape(caption)}</figcaption></figure>")


def search_page(tags: list[dict], selected: list[str], found: dict | None) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" name="tags" value="{html.escape(t["label"], quote=True)}"'
        f'{" checked" if t["label"] in selected else ""}> {html.escape(t["label"])} ({t["images"]})</label> '
        for t in tags)
    form = ('<form method="post" action="/" enctype="multipart/form-data">'
            '<div id="drop">Drop images here, or choose one: <input type="file" id="image" name="image" '
            'accept="image/*"> <button type="submit">Search</button></div>'
            + (f'<p>Only images with: {boxes}</p>' if boxes else "") + "</form>")
    results = ""
    if found is not None:
        for res in found["results"]:
            if "error" in res:
                row = f'<p class="error">{html.escape(res["error"])}</p>'
            else:
                row = "".join(_figure(m["image"], f'{found["by"]} {m["score"]}') for m in res["matches"])
            results += f'<section><h2>{html.escape(res["query"] or "query")}</h2><div class="row">{row}</div></section>'
    return _layout("Search", form + f'<div id="results">{results}</div>', _SEARCH_SCRIPT)


def duplicates_page(data: dict, level: str) -> str:
    levels = " ".join(f'<a href="/duplicates?level={name}">{name}</a>' if name != level else f"<b>{name}</b>"
                      for name in ("copy", "scene"))
    body = (f'<p class="meta">{data["total"]} groups at level {html.escape(level)} ({levels}); page {data["page"]} '
            f'of {data["pages"]}. Choose the image to keep, then move the others aside (undo restores them).</p>')
    for n, group in enumerate(data["groups"], (data["page"] - 1) * data["per_page"] + 1):
        keeper = group["keeper"]
        radio = '<input type="radio" name="keep-{n}" value="{id}"{checked}> keep '
        tiles = _figure(keeper, f'{keeper["width"]}x{keeper["height"]}, {keeper["size"]:,} bytes, keeper',
                        radio.format(n=n, id=keeper["id"], checked=" checked"), keep=True)
        for m in group["members"]:
            score = f'p={m["score"]:.3f}, ' if m["score"] is not None else ""
            tiles += _figure(m["image"], f'{score}{m["reason"]}', radio.format(n=n, id=m["image"]["id"], checked=""))
        body += (f'<section data-group="{n}"><h2>group {n}: {len(group["members"]) + 1} images</h2>'
                 f'<div class="row">{tiles}</div><button class="move">Move the others aside</button> '
                 f'<span class="status"></span></section>')
    pager = "".join(f'<a href="/duplicates?level={level}&page={p}">{p}</a> ' for p in range(1, data["pages"] + 1))
    return _layout("Duplicates", body + f"<p>Pages: {pager}</p>", _DUPLICATES_SCRIPT)


def clusterings_page(runs: list[dict]) -> str:
    if not runs:
        return _layout("Clusters", '<p class="meta">No clustering yet: run simsearch cluster.</p>')
    items = "".join(f'<li><a href="/clusters/{html.escape(r["name"], quote=True)}">{html.escape(r["name"])}</a> '
                    f'{html.escape(json.dumps({k: v for k, v in r.items() if k != "name"}, default=str))}</li>'
                    for r in runs)
    return _layout("Clusters", f"<ul>{items}</ul>")


def clusters_page(run: str, clusters: list[dict], shown: int = 12) -> str:
    body = ""
    for c in clusters:
        members = c["members"][:shown]
        tiles = "".join(_figure(m["image"], "medoid" if m["image"]["id"] == c["medoid"]["id"] else
                                f'distance {m["distance"]:.4f}', keep=m["image"]["id"] == c["medoid"]["id"])
                        for m in members)
        more = f'<p class="meta">and {c["size"] - len(members)} more</p>' if c["size"] > len(members) else ""
        body += (f'<section><h2>cluster {c["cluster"]}: {c["size"]} images, mean distance {c["mean_distance"]}</h2>'
                 f'<div class="row">{tiles}</div>{more}</section>')
    return _layout(f"Clusters: {run}", body)
