(function () {
  "use strict";
  var viewers = [], active = null;
  function q(root, role) { return root.querySelector('[data-role="' + role + '"]'); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function Viewer(el) {
    var d = JSON.parse(document.getElementById(el.getAttribute("data-json")).textContent);
    var P = d.plot, x0 = P.left, x1 = P.width - P.right, y0 = P.height - P.bottom, y1 = P.top;
    var slider = q(el, "slider"), img = q(el, "frame"), srcImg = q(el, "source");
    var cursor = q(el, "cursor"), dot = q(el, "dot"), play = q(el, "play");
    var svg = q(el, "plot"), timer = null;
    var st = {view: d.start_view, frame: d.start_frame};
    function sx(v) { return x0 + (x1 - x0) * v / P.xmax; }
    function sy(p) { return y0 + (y1 - y0) * p; }
    function V() { return d.views[st.view]; }
    function find(domain, driver) {
      for (var k = 0; k < d.views.length; k++) {
        if (d.views[k].domain === domain && d.views[k].driver === driver) return k;
      }
      return -1;
    }
    function setFrame(i) {
      var v = V();
      i = Math.max(0, Math.min(v.n - 1, Math.round(+i || 0)));
      st.frame = i;
      slider.max = String(v.n - 1);
      slider.value = String(i);
      img.src = d.images[v.frames[i]];
      q(el, "idx").textContent = String(i);
      q(el, "nmax").textContent = String(v.n - 1);
      q(el, "alpha").textContent = v.alpha_txt[i];
      q(el, "l2").textContent = v.l2_txt[i];
      q(el, "p").textContent = v.p_txt[i];
      q(el, "frame-caption").textContent = "frame " + i + " · L2 " + v.l2_txt[i];
      q(el, "mc").textContent = v.max_change ? "max |edit| = " + v.max_change[i] : "";
      q(el, "unreached").textContent =
        (v.reached && !v.reached[i]) ? "L2 budget not reached" : "";
      var evs = [];
      for (var e = 0; e < v.evaluators.length; e++) {
        evs.push(esc(v.evaluators[e].name) + " p(" + esc(v.target) + ") = <b>" +
                 esc(v.evaluators[e].txt[i]) + "</b>");
      }
      q(el, "evs").innerHTML = evs.join(" · ");
      var x = sx(v.l2[i]), y = sy(v.p[i]);
      cursor.setAttribute("x1", x.toFixed(2));
      cursor.setAttribute("x2", x.toFixed(2));
      dot.setAttribute("cx", x.toFixed(2));
      dot.setAttribute("cy", y.toFixed(2));
      slider.setAttribute("aria-valuetext", "frame " + i + ", alpha " + v.alpha_txt[i] +
                          ", L2 " + v.l2_txt[i] + ", p(" + v.target + ") " + v.p_txt[i]);
    }
    function setView(k) {
      if (k < 0 || k >= d.views.length) return;
      st.view = k;
      var v = V();
      var bs = el.querySelectorAll("button[data-domain]");
      for (var b = 0; b < bs.length; b++) {
        bs[b].setAttribute("aria-pressed", bs[b].getAttribute("data-domain") === v.domain);
      }
      bs = el.querySelectorAll("button[data-driver]");
      for (b = 0; b < bs.length; b++) {
        var dr = bs[b].getAttribute("data-driver");
        bs[b].setAttribute("aria-pressed", dr === v.driver);
        bs[b].disabled = find(v.domain, dr) < 0;
      }
      if (v.source >= 0) { srcImg.src = d.images[v.source]; }
      srcImg.parentNode.hidden = v.source < 0;
      q(el, "source-caption").textContent =
        "source" + (v.source_name === null ? "" : " · " + v.source_name);
      var cs = svg.querySelectorAll("[data-view]");
      for (var c = 0; c < cs.length; c++) {
        cs[c].classList.toggle("on", +cs[c].getAttribute("data-view") === k);
      }
      q(el, "plabel").textContent = "p(" + v.target + ")";
      q(el, "ylabel").textContent = "p(" + v.target + ")";
      var vs = [];
      for (var j = 0; j < v.verdicts.length; j++) {
        vs.push(esc(v.verdicts[j][0]) + ": <b>" + esc(v.verdicts[j][1]) + "</b>");
      }
      q(el, "verdicts").innerHTML = vs.length ?
        "Independent classifiers on the last frame: " + vs.join(" · ") : "";
      q(el, "caption").innerHTML = v.caption_html;  /* built escaped in Python */
      setFrame(st.frame);
    }
    function step(n) { stop(); setFrame(st.frame + n); }
    function stop() {
      if (timer !== null) { clearInterval(timer); timer = null; }
      play.innerHTML = "&#9654; play";
      play.setAttribute("aria-label", "play");
    }
    function start() {
      if (st.frame >= V().n - 1) setFrame(0);
      play.innerHTML = "&#10074;&#10074; pause";
      play.setAttribute("aria-label", "pause");
      timer = setInterval(function () {
        if (st.frame >= V().n - 1) { stop(); return; }
        setFrame(st.frame + 1);
      }, 350);
    }
    slider.addEventListener("input", function () { stop(); setFrame(slider.value); });
    play.addEventListener("click", function () { if (timer === null) start(); else stop(); });
    el.addEventListener("click", function (e) {
      var b = e.target.closest ? e.target.closest("button") : null;
      if (!b || b.disabled) return;
      var v = V(), k = -1;
      if (b.hasAttribute("data-domain")) {
        var dom = b.getAttribute("data-domain");
        k = find(dom, v.driver);
        for (var j = 0; k < 0 && j < d.views.length; j++) if (d.views[j].domain === dom) k = j;
      } else if (b.hasAttribute("data-driver")) {
        k = find(v.domain, b.getAttribute("data-driver"));
      }
      if (k >= 0) setView(k);
    });
    el.addEventListener("focusin", function () { active = api; });
    el.addEventListener("pointerdown", function () { active = api; });
    el.addEventListener("keydown", function (e) {
      if (e.target === slider) return;   /* the range input steps itself */
      if (key(e)) e.preventDefault();
    });
    function key(e) {
      if (e.altKey || e.ctrlKey || e.metaKey) return false;
      if (e.key === "ArrowRight") { step(1); return true; }
      if (e.key === "ArrowLeft") { step(-1); return true; }
      if (e.key === "Home") { step(-1e9); return true; }
      if (e.key === "End") { step(1e9); return true; }
      return false;
    }
    var api = {el: el, key: key, setFrame: setFrame, setView: setView, state: st};
    setView(st.view);
    return api;
  }
  var els = document.querySelectorAll(".lj-viewer");
  for (var i = 0; i < els.length; i++) viewers.push(Viewer(els[i]));
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (!viewers.length || (t && t.closest && t.closest(".lj-viewer"))) return;
    if (t && /^(INPUT|SELECT|TEXTAREA|BUTTON|A)$/.test(t.tagName)) return;
    if ((active || viewers[0]).key(e)) e.preventDefault();
  });
  window.lensReport = {viewers: viewers};
})();
