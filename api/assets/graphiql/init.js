// Mounts GraphiQL: queries and mutations POST to /graphql, subscriptions go over /ws, both on this
// origin. Served as a file (not inline) so that the page's CSP can be `script-src 'self'`.
(function () {
  "use strict";
  var ws = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + "/ws";
  var fetcher = GraphiQL.createFetcher({ url: "/graphql", subscriptionUrl: ws });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  // The headers editor is where a bearer token goes ({"Authorization": "Bearer …"}); headers are
  // not persisted in local storage, so a token does not outlive the tab.
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: true,
    })
  );
})();
