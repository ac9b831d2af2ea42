"""Close inspection of two images: zoom and pan both together, hold X to flicker in place, or a
swipe slider. A Streamlit custom component (v2, inline HTML/CSS/JS, served by the app itself: no
CDN, no request leaves the machine). It shows only the labels it is given, so on the vote page
it reveals nothing about which model made which image.
"""

from __future__ import annotations

import base64
from pathlib import Path

import streamlit as st

MODES = {"side": "Side by side", "flicker": "Flicker (hold X)", "swipe": "Swipe"}

_HTML = """
<div class="insp">
  <div class="bar">
    <span class="modes"></span>
    <button type="button" data-act="out" title="Zoom out">-</button>
    <span class="zoom">100%</span>
    <button type="button" data-act="in" title="Zoom in">+</button>
    <button type="button" data-act="reset" title="Fit (double-click an image)">Fit</button>
    <button type="button" data-act="hold" class="hold" title="Hold to see the other image">Hold: other image</button>
    <input type="range" class="swipe" min="0" max="100" value="50" aria-label="Swipe position">
    <span class="hint"></span>
  </div>
  <div class="stage"></div>
</div>
"""

_CSS = """
.insp { font-family: inherit; color: var(--st-text-color); }
.bar { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; margin-bottom: .4rem; }
.bar button { border: 1px solid var(--st-border-color, #ccc); background: transparent;
  color: inherit; border-radius: .4rem; padding: .15rem .6rem; cursor: pointer; font: inherit; }
.bar button.on { background: var(--st-primary-color); color: white; border-color: transparent; }
.bar .hint { opacity: .7; font-size: .85em; }
.bar input.swipe { width: 10rem; }
.stage { display: flex; gap: .5rem; }
.pane { position: relative; flex: 1 1 0; overflow: hidden; touch-action: none; cursor: grab;
  aspect-ratio: 1 / 1; max-height: 46vh; background: #111; border-radius: .3rem; }
.stage.single { justify-content: center; }
.stage.single .pane { flex: 0 0 auto; width: min(100%, 46vh); }
.pane .layer { position: absolute; inset: 0; overflow: hidden; }
.pane img { position: absolute; left: 0; top: 0; width: 100%; height: 100%; object-fit: contain;
  transform-origin: 0 0; user-select: none; -webkit-user-drag: none; pointer-events: none; }
.pane.sharp img { image-rendering: pixelated; }
.pane .label { position: absolute; left: .4rem; top: .3rem; padding: 0 .4rem; border-radius: .3rem;
  background: rgba(0, 0, 0, .6); color: white; font-size: .85em; z-index: 2; }
.pane .divider { position: absolute; top: 0; bottom: 0; width: 2px; background: white; z-index: 1;
  pointer-events: none; }
"""

_JS = """
export default function (component) {
  const { data, parentElement, key } = component;
  const root = parentElement.querySelector('.insp');
  const stage = root.querySelector('.stage');
  const modesEl = root.querySelector('.modes');
  const zoomEl = root.querySelector('.zoom');
  const slider = root.querySelector('input.swipe');
  const holdBtn = root.querySelector('button.hold');
  const hint = root.querySelector('.hint');
  const [labelA, labelB] = data.labels;
  // One view state per component instance, kept across reruns with the same images.
  const store = (window.__arenaInspector = window.__arenaInspector || {});
  const id = key + '|' + data.token;
  const view = store[id] || (store[id] = { s: 1, x: 0, y: 0, mode: data.mode, other: false, swipe: 50 });

  modesEl.replaceChildren(...Object.entries(data.modes).map(([mode, text]) => {
    const b = document.createElement('button');
    b.type = 'button'; b.textContent = text; b.dataset.mode = mode;
    b.onclick = () => { view.mode = mode; view.other = false; build(); };
    return b;
  }));

  function pane(parts) {
    const p = document.createElement('div');
    p.className = 'pane';
    for (const [src, cls] of parts) {
      // The layer is clipped (swipe) or hidden (flicker) in the pane's space; the image inside
      // it carries the zoom, so the wipe line stays where the divider is at any zoom.
      const layer = document.createElement('div');
      layer.className = 'layer ' + cls;
      const img = document.createElement('img');
      img.src = src; img.alt = ''; img.className = cls; img.draggable = false;
      layer.appendChild(img);
      p.appendChild(layer);
    }
    const label = document.createElement('span');
    label.className = 'label';
    p.appendChild(label);
    return p;
  }

  function build() {
    stage.replaceChildren();
    if (view.mode === 'side') {
      stage.append(pane([[data.a, 'a']]), pane([[data.b, 'b']]));
    } else if (view.mode === 'flicker') {
      stage.append(pane([[data.a, 'a'], [data.b, 'b']]));
    } else {
      const p = pane([[data.a, 'a'], [data.b, 'b']]);
      const divider = document.createElement('div');
      divider.className = 'divider';
      p.appendChild(divider);
      stage.append(p);
    }
    for (const b of modesEl.children) b.classList.toggle('on', b.dataset.mode === view.mode);
    slider.style.display = view.mode === 'swipe' ? '' : 'none';
    holdBtn.style.display = view.mode === 'flicker' ? '' : 'none';
    hint.textContent = view.mode === 'side'
      ? 'Scroll or use +/- to zoom, drag to pan: both images move together.'
      : view.mode === 'flicker' ? 'Hold X (or the button) to see the other image in the same place.'
      : 'Drag the slider to wipe between the images.';
    stage.classList.toggle('single', view.mode !== 'side');
    for (const p of stage.children) attach(p);
    clamp();
    paint();
  }

  function paint() {
    const t = `translate(${view.x}px, ${view.y}px) scale(${view.s})`;
    for (const p of stage.children) {
      p.classList.toggle('sharp', view.s >= 2);
      const a = p.querySelector('img.a'), b = p.querySelector('img.b');
      for (const img of [a, b]) if (img) img.style.transform = t;
      const top = p.querySelector('.layer.b');
      const label = p.querySelector('.label');
      if (view.mode === 'side') {
        label.textContent = a ? labelA : labelB;
      } else if (view.mode === 'flicker') {
        top.style.visibility = view.other ? 'visible' : 'hidden';
        label.textContent = view.other ? labelB : labelA;
        p.dataset.showing = view.other ? 'b' : 'a';
      } else {
        top.style.clipPath = `inset(0 0 0 ${view.swipe}%)`;
        p.querySelector('.divider').style.left = `calc(${view.swipe}% - 1px)`;
        label.textContent = `${labelA} | ${labelB}`;
      }
    }
    zoomEl.textContent = Math.round(view.s * 100) + '%';
    slider.value = view.swipe;
    holdBtn.classList.toggle('on', view.other);
  }

  function zoomAt(factor, px, py) {
    const s = Math.min(16, Math.max(1, view.s * factor));
    // keep the point under the cursor fixed: p = x + s * u  =>  x' = p - s' * (p - x) / s
    view.x = px - (s * (px - view.x)) / view.s;
    view.y = py - (s * (py - view.y)) / view.s;
    view.s = s;
    clamp();
    paint();
  }

  function clamp() {
    const p = stage.firstElementChild;
    if (!p) return;
    const w = p.clientWidth, h = p.clientHeight;
    view.x = Math.min(0, Math.max(w - w * view.s, view.x));
    view.y = Math.min(0, Math.max(h - h * view.s, view.y));
  }

  function attach(p) {
    p.addEventListener('wheel', (e) => {
      e.preventDefault();
      const r = p.getBoundingClientRect();
      zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let drag = null;
    p.addEventListener('pointerdown', (e) => {
      drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
      p.setPointerCapture(e.pointerId);
    });
    p.addEventListener('pointermove', (e) => {
      if (!drag) return;
      view.x = drag.vx + e.clientX - drag.x;
      view.y = drag.vy + e.clientY - drag.y;
      clamp();
      paint();
    });
    const end = () => { drag = null; };
    p.addEventListener('pointerup', end);
    p.addEventListener('pointercancel', end);
    p.addEventListener('dblclick', () => { view.s = 1; view.x = 0; view.y = 0; paint(); });
  }

  root.querySelector('[data-act=in]').onclick = () => {
    const p = stage.firstElementChild; zoomAt(1.5, p.clientWidth / 2, p.clientHeight / 2);
  };
  root.querySelector('[data-act=out]').onclick = () => {
    const p = stage.firstElementChild; zoomAt(1 / 1.5, p.clientWidth / 2, p.clientHeight / 2);
  };
  root.querySelector('[data-act=reset]').onclick = () => { view.s = 1; view.x = 0; view.y = 0; paint(); };
  slider.oninput = () => { view.swipe = Number(slider.value); paint(); };
  const hold = (on) => { if (view.mode === 'flicker' && view.other !== on) { view.other = on; paint(); } };
  holdBtn.onpointerdown = () => hold(true);
  holdBtn.onpointerup = holdBtn.onpointerleave = () => hold(false);

  // Hold X to flicker. One listener per page: replace the previous instance's.
  const typing = (e) => e.target && ['INPUT', 'TEXTAREA'].includes(e.target.tagName);
  const down = (e) => { if ((e.key === 'x' || e.key === 'X') && !typing(e)) { e.preventDefault(); hold(true); } };
  const up = (e) => { if (e.key === 'x' || e.key === 'X') hold(false); };
  const old = store.__keys && store.__keys[key];
  if (old) { document.removeEventListener('keydown', old[0]); document.removeEventListener('keyup', old[1]); }
  document.addEventListener('keydown', down);
  document.addEventListener('keyup', up);
  (store.__keys = store.__keys || {})[key] = [down, up];

  build();
  return () => {
    document.removeEventListener('keydown', down);
    document.removeEventListener('keyup', up);
  };
}
"""

_component = st.components.v2.component(
    name="arena_pair_inspector", html=_HTML, css=_CSS, js=_JS, isolate_styles=True
)


def _data_uri(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    mime = {"jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}.get(suffix, "png")
    return f"data:image/{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def inspect_pair(
    first: Path,
    second: Path,
    *,
    labels: tuple[str, str] = ("Left", "Right"),
    mode: str = "side",
    key: str = "inspector",
) -> None:
    """Render the inspector for two image files, labelled only with `labels`.

    The images travel inside the page as data URIs, so only call this when the user asked to
    inspect (it is not on the vote page's hot path).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {list(MODES)}")
    a, b = _data_uri(Path(first)), _data_uri(Path(second))
    token = f"{len(a)}:{a[-24:]}:{len(b)}:{b[-24:]}"  # new images -> a fresh zoom state
    _component(
        data={"a": a, "b": b, "labels": list(labels), "mode": mode, "modes": MODES, "token": token},
        key=key,
    )
