// ReDoc for /redoc, started from a file: the pages' CSP allows no inline script. The nonce
// lets in the <style> elements ReDoc creates, and nothing else.
const root = document.getElementById("redoc");
Redoc.init("/openapi.json", { nonce: root.dataset.nonce, disableSearch: true }, root);
