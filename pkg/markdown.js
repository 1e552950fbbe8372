// Model output is untrusted text: Markdown to HTML (marked), sanitized (DOMPurify) into
// DOM nodes, links opening in a new tab without access to the page. The chat page and the
// widget render with this one function.

import { marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';

export function renderMarkdown(el, text) {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  const frag = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  for (const a of frag.querySelectorAll('a')) {
    a.setAttribute('target', '_blank');
    a.setAttribute('rel', 'noopener noreferrer');
  }
  el.replaceChildren(frag);
}
