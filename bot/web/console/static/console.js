// The console's only script: uploads one file per request with a progress bar and a result row per file, files
// dropped on the upload box, and a confirmation before a destructive button. Every page works without it except uploads
// (a multipart form cannot carry the CSRF header without a script).
"use strict";
(function () {
  document.addEventListener("click", function (e) {
    const b = e.target.closest("button[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });

  const form = document.getElementById("upload");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const results = document.getElementById("upload-results");
  const table = document.getElementById("upload-table");
  const box = document.getElementById("upload-progress");
  const bar = box.querySelector("progress");
  const label = box.querySelector("span");

  ["dragenter", "dragover"].forEach(function (n) {
    form.addEventListener(n, function (e) { e.preventDefault(); form.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (n) {
    form.addEventListener(n, function (e) { e.preventDefault(); form.classList.remove("over"); });
  });
  form.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; send(); }
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); send(); });

  function refused(name, why) {  // a result row for a request the server refused as a whole (too large, throttled)
    const tr = document.createElement("tr");
    tr.className = "result-error";
    [name, "✗", why].forEach(function (text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
    return tr.outerHTML;
  }

  function one(file) {
    return new Promise(function (resolve) {
      const body = new FormData();
      body.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
      xhr.setRequestHeader("X-Console-Fragment", "1");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
      xhr.onload = function () {
        const ct = xhr.getResponseHeader("Content-Type") || "";
        if (ct.indexOf("text/html") === 0) { resolve(xhr.responseText); return; }
        let why = xhr.statusText;
        try { why = JSON.parse(xhr.responseText).error || why; } catch (_) { /* not JSON */ }
        resolve(refused(file.name, why));
      };
      xhr.onerror = function () { resolve(refused(file.name, "network error")); };
      xhr.send(body);
    });
  }

  async function send() {
    const files = Array.from(input.files || []);
    if (!files.length) { input.focus(); return; }
    const button = form.querySelector("button");
    button.disabled = true;
    box.hidden = false;
    table.hidden = false;
    results.innerHTML = "";
    for (let i = 0; i < files.length; i++) {
      bar.value = 0;
      label.textContent = (i + 1) + "/" + files.length + " · " + files[i].name;
      const html = await one(files[i]);
      results.insertAdjacentHTML("beforeend", html);  // the server's own escaped HTML
    }
    box.hidden = true;
    button.disabled = false;
    input.value = "";
  }
})();
