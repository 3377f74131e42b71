//! The page around the charts: escaping, the inline data, the style sheet and the script.
//!
//! Everything is inline so that the file opens anywhere with no network. The script only
//! reads the data embedded in the page; it draws nothing the HTML does not already hold, so a
//! page without script still shows the whole run.

use std::fmt::Write;

/// `text` escaped for HTML text and attribute values (double or single quoted).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a JSON string literal that is also safe inside a `<script>` element: `<`, `>`
/// and `&` are escaped so no `</script>` or `<!--` can appear, and so are the line and
/// paragraph separators that older JavaScript parsers choke on.
pub fn json_string(text: &str) -> String {
    // The JSON escaping is the report's; only the HTML-unsafe characters are added here (its
    // escapes are backslash, `u` and hex digits, so none of them is rewritten).
    let json = crate::output::json_string(text);
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Installed first, in `<head>`, so that an error anywhere later is counted; the count ends
/// up on `<body data-errors>` for the browser test.
pub const ERROR_COUNTER: &str = "window.__timelineErrors = 0;\n\
window.addEventListener('error', function () {\n\
  window.__timelineErrors += 1;\n\
  if (document.body) { document.body.setAttribute('data-errors', String(window.__timelineErrors)); }\n\
});\n";

/// The style sheet.
pub const STYLE: &str = r#"
body { font: 13px/1.4 system-ui, sans-serif; margin: 12px 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.summary { color: #444; margin: 0 0 8px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: -1px; }
.scroll { overflow-x: auto; border: 1px solid #ddd; }
.scroll svg { display: block; }
svg text { font: 10px system-ui, sans-serif; fill: #333; }
svg text.lane { font-size: 11px; }
.grid { stroke: #eee; }
.axis { stroke: #999; }
.op.ok, .pt.ok, .hist.ok, i.ok { fill: #43a047; background: #43a047; }
.op.fail, .pt.fail, .hist.fail, i.fail { fill: #e53935; background: #e53935; }
.op.unk, .pt.unk, .hist.unk, i.unk { fill: #fb8c00; background: #fb8c00; }
.op.pend, .pt.pend, .hist.pend, i.pend { fill: #9e9e9e; background: #9e9e9e; }
.band.part, i.part { fill: #ab47bc; background: #ab47bc; opacity: .55; }
.band.down, i.down { fill: #424242; background: #424242; opacity: .7; }
.band.disk, i.disk { fill: #6d4c41; background: #6d4c41; opacity: .6; }
.band.clog, i.clog { fill: #1e88e5; background: #1e88e5; opacity: .5; }
.band.susp, i.susp { fill: #fdd835; background: #fdd835; opacity: .7; }
.tick { stroke-width: 2; }
.tick.clock { stroke: #00897b; }
.tick.flip { stroke: #d81b60; }
.tick.power { stroke: #000; }
.tick.member { stroke: #3949ab; }
.backdrop.part { fill: #ab47bc; opacity: .08; }
.backdrop.viol { fill: #e53935; opacity: .10; }
.phase { stroke: #555; stroke-dasharray: 4 3; }
.viol-mark { fill: #d50000; stroke: #fff; stroke-width: 1; cursor: pointer; }
.viol-mark.expected { fill: #9e9e9e; }
.viol-mark.sel { stroke: #000; stroke-width: 2; }
body.focus .op:not(.hl), body.focus .pt:not(.hl) { opacity: .12; }
.op.hl, .pt.hl { stroke: #000; stroke-width: 1.5; opacity: 1; }
#violations li { margin: 4px 0; cursor: pointer; }
#violations li.sel { background: #ffebee; }
#violations .checker { font-weight: 600; color: #b71c1c; }
#violations li.expected .checker { color: #616161; }
a.oplink { display: inline-block; margin: 0 3px 0 0; padding: 0 4px; border: 1px solid #bbb; border-radius: 3px; color: #1a237e; text-decoration: none; font-size: 11px; }
#tip { position: fixed; display: none; max-width: 520px; white-space: pre-wrap; background: #fffde7; border: 1px solid #999; padding: 4px 6px; font-size: 12px; pointer-events: none; z-index: 10; }
button.view { margin-right: 4px; }
button.view.on { font-weight: 700; }
"#;

/// The script: tooltips, the client/node view switch, selecting a violation (its operations
/// highlighted, the first scrolled into view), following an operation link, and a self-check
/// whose results land on `<body>` (`data-linked`, `data-missing`, `data-ready`) so that a
/// headless browser's DOM dump shows whether the page works. With `#selftest` in the address
/// the first violation is selected on load and `data-highlighted` counts what lit up.
pub const SCRIPT: &str = r#"
(function () {
  'use strict';
  var body = document.body;
  var OPS = JSON.parse(document.getElementById('ops-data').textContent);
  var VIOLS = JSON.parse(document.getElementById('viol-data').textContent);
  var tip = document.getElementById('tip');
  function ms(us) { return us < 0 ? '-' : (us / 1000).toFixed(3) + ' ms'; }
  function opText(index) {
    var op = OPS[index];
    if (!op) { return 'op ' + index; }
    var who = op[0] < 0 ? 'final pass' : 'client ' + op[0];
    var latency = op[3] < 0 ? 'never completed' : ((op[3] - op[2]) / 1000).toFixed(3) + ' ms';
    return 'op ' + index + ' · ' + who + ' · n' + op[1] + '\n' + op[5] + '\n' +
      'invoked ' + ms(op[2]) + ', completed ' + ms(op[3]) + ' (' + latency + ')\n' + op[4];
  }
  function place(event) {
    tip.style.left = Math.min(event.clientX + 14, window.innerWidth - 540) + 'px';
    tip.style.top = (event.clientY + 14) + 'px';
  }
  document.addEventListener('mouseover', function (event) {
    var target = event.target.closest ? event.target.closest('[data-op],[data-tip]') : null;
    if (!target) { tip.style.display = 'none'; return; }
    tip.textContent = target.hasAttribute('data-op')
      ? opText(Number(target.getAttribute('data-op')))
      : target.getAttribute('data-tip');
    tip.style.display = 'block';
    place(event);
  });
  document.addEventListener('mousemove', function (event) {
    if (tip.style.display === 'block') { place(event); }
  });
  var lit = [];
  function clear() {
    lit.forEach(function (element) { element.classList.remove('hl'); });
    lit = [];
    body.classList.remove('focus');
    document.querySelectorAll('[data-viol].sel').forEach(function (element) {
      element.classList.remove('sel');
    });
  }
  function light(op) {
    document.querySelectorAll('[data-op="' + op + '"]').forEach(function (element) {
      element.classList.add('hl');
      lit.push(element);
    });
  }
  function reveal(element) {
    if (element && element.scrollIntoView) {
      element.scrollIntoView({ block: 'center', inline: 'center' });
    }
  }
  function select(index) {
    clear();
    var violation = VIOLS[index];
    if (!violation) { return 0; }
    document.querySelectorAll('[data-viol="' + index + '"]').forEach(function (element) {
      element.classList.add('sel');
    });
    if (violation.ops.length === 0) { reveal(document.getElementById('vm' + index)); return 0; }
    body.classList.add('focus');
    violation.ops.forEach(light);
    reveal(document.getElementById('o' + violation.ops[0]));
    return lit.length;
  }
  document.addEventListener('click', function (event) {
    var link = event.target.closest('a.oplink');
    if (link) {
      event.preventDefault();
      clear();
      body.classList.add('focus');
      light(Number(link.getAttribute('data-op')));
      reveal(document.getElementById('o' + link.getAttribute('data-op')));
      return;
    }
    var mark = event.target.closest('[data-viol]');
    if (mark) { event.preventDefault(); select(Number(mark.getAttribute('data-viol'))); return; }
    var button = event.target.closest('button.view');
    if (button) {
      var view = button.getAttribute('data-view');
      document.querySelectorAll('svg.ops').forEach(function (svg) {
        svg.style.display = svg.getAttribute('data-view') === view ? 'block' : 'none';
      });
      document.querySelectorAll('button.view').forEach(function (other) {
        other.classList.toggle('on', other === button);
      });
      return;
    }
    if (!event.target.closest('svg [data-op]')) { clear(); }
  });
  var linked = 0;
  var missing = 0;
  VIOLS.forEach(function (violation) {
    violation.ops.forEach(function (op) {
      if (document.getElementById('o' + op)) { linked += 1; } else { missing += 1; }
    });
  });
  body.setAttribute('data-linked', String(linked));
  body.setAttribute('data-missing', String(missing));
  if (location.hash === '#selftest') {
    body.setAttribute('data-highlighted', String(VIOLS.length > 0 ? select(0) : 0));
  }
  body.setAttribute('data-errors', String(window.__timelineErrors || 0));
  body.setAttribute('data-ready', '1');
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_json_cannot_close_the_script() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let json = json_string("</script><!--\"\\\n\u{1}\u{2028}");
        assert_eq!(json, r#""\u003c/script\u003e\u003c!--\"\\\n\u0001\u2028""#);
        assert!(!json.contains('<'));
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
