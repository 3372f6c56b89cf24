// Swagger UI on /openapi.json, offline (no validator badge, no CDN). A token given as
// /docs#token=<JWT> (or stored by an earlier visit) pre-fills the bearer authorization.
(function () {
  "use strict";
  var KEY = "feedserver.docs.token";
  var fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    localStorage.setItem(KEY, fromHash);
    history.replaceState(null, "", location.pathname);
  }
  var token = localStorage.getItem(KEY);
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: true,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    onComplete: function () {
      if (token) window.ui.preauthorizeApiKey("bearer", token);
    },
  });
})();
