// The Gongji playground: GraphiQL with two panels of our own.
//   Personas: act as a roster person; every request then carries their token.
//   Examples: the walkthroughs, opened in tabs (all of them on a first visit).
// Plain script over the UMD globals React, ReactDOM, GraphiQL and
// GraphiQLPluginExplorer, all served by the gateway: no build step, no CDN.
(function () {
  "use strict";

  const h = React.createElement;
  const { useEffect, useState } = React;
  const STORED_PERSONA = "gongji:persona";
  const ENDPOINT = "/graphql";

  // --- who we are acting as ---------------------------------------------------

  let session = null; // { persona, token } or null (anonymous)
  const listeners = new Set();

  function setSession(next) {
    session = next;
    if (next) localStorage.setItem(STORED_PERSONA, next.persona.key);
    else localStorage.removeItem(STORED_PERSONA);
    listeners.forEach((listener) => listener(next));
  }

  function useSession() {
    const [current, setCurrent] = useState(session);
    useEffect(() => {
      listeners.add(setCurrent);
      return () => listeners.delete(setCurrent);
    }, []);
    return current;
  }

  async function getJSON(url, init) {
    const response = await fetch(url, init);
    if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
    return response.json();
  }

  let renewal = null;

  async function actAs(persona) {
    const path = `/playground/personas/${encodeURIComponent(persona.key)}/token`;
    const { token, expiresIn } = await getJSON(path, { method: "POST" });
    setSession({ persona, token });
    // a fresh token a minute before this one expires, for as long as the tab is open
    clearTimeout(renewal);
    renewal = setTimeout(() => {
      if (session && session.persona.key === persona.key) actAs(persona).catch(() => setSession(null));
    }, Math.min(Math.max(expiresIn - 60, 1) * 1000, 2 ** 31 - 1)); // setTimeout's own limit
  }

  // GraphiQL learns a tab's operation name a moment after the tab is shown; run
  // straight away and it may send the previous tab's. Name the one operation.
  function withOperationName(params) {
    if (!params.operationName || typeof params.query !== "string") return params;
    try {
      const names = GraphiQL.GraphQL.parse(params.query)
        .definitions.filter((definition) => definition.kind === "OperationDefinition")
        .map((definition) => (definition.name ? definition.name.value : undefined));
      if (names.includes(params.operationName) || names.length !== 1) return params;
      return { ...params, operationName: names[0] };
    } catch (_) {
      return params; // the server reports the syntax error
    }
  }

  // Requests carry the persona's token, unless the headers pane sets its own.
  const baseFetcher = GraphiQL.createFetcher({ url: ENDPOINT });
  function fetcher(params, options) {
    const own = (options && options.headers) || {};
    const headers = { ...own };
    const hasOwn = Object.keys(own).some((name) => name.toLowerCase() === "authorization");
    if (session && !hasOwn) headers.Authorization = `Bearer ${session.token}`;
    return baseFetcher(withOperationName(params), { ...options, headers });
  }

  // --- the personas panel -------------------------------------------------------

  function matches(persona, words) {
    const text = [
      persona.name,
      persona.key,
      persona.certNo,
      persona.notes,
      persona.role,
      persona.area ? persona.area.name : "",
      persona.province ? `${persona.province.name} ${persona.province.code}` : "",
      persona.insurance ? `${persona.insurance.type} ${persona.insurance.status}` : "",
    ]
      .join(" ")
      .toLowerCase();
    return words.every((word) => text.includes(word));
  }

  function groupByProvince(personas) {
    const groups = new Map();
    for (const persona of personas) {
      const title =
        persona.role !== "INSURED"
          ? "Staff"
          : persona.province
            ? `${persona.province.name} (${persona.province.code})`
            : "Not federated";
      if (!groups.has(title)) groups.set(title, []);
      groups.get(title).push(persona);
    }
    return [...groups.entries()];
  }

  function PersonaItem({ persona, chosen, onChoose }) {
    return h(
      "li",
      null,
      h(
        "button",
        {
          type: "button",
          className: "gongji-item",
          "aria-pressed": chosen ? "true" : "false",
          "data-persona": persona.key,
          title: `Act as ${persona.name}`,
          onClick: () => onChoose(persona),
        },
        h(
          "span",
          { className: "gongji-line" },
          h("strong", null, persona.name),
          h(
            "span",
            { className: "gongji-meta" },
            persona.insurance
              ? `${persona.area.name} · ${persona.insurance.type} · ${persona.insurance.status}`
              : persona.role,
          ),
        ),
        h("span", { className: "gongji-meta" }, persona.certNo),
        h("small", null, persona.notes),
      ),
    );
  }

  function PersonasPanel({ personas }) {
    const current = useSession();
    const [filter, setFilter] = useState("");
    const [problem, setProblem] = useState(null);
    useEffect(() => {
      // bench/playground_load.py reads this: the page is usable from here on
      if (!performance.getEntriesByName("gongji:personas-shown").length) {
        performance.mark("gongji:personas-shown");
      }
    }, []);
    const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = personas.filter((persona) => matches(persona, words));

    function choose(persona) {
      setProblem(null);
      actAs(persona).catch((error) => setProblem(`Could not act as ${persona.name}: ${error.message}`));
    }

    return h(
      "div",
      { className: "gongji-panel", "data-panel": "personas" },
      h("h2", null, "Personas"),
      h(
        "p",
        null,
        "Synthetic people of the sandbox. Pick one: the requests that follow carry their token.",
      ),
      h(
        "div",
        { className: "gongji-current" },
        current
          ? h("span", null, "Acting as ", h("strong", { "data-acting-as": current.persona.key }, current.persona.name))
          : h("span", null, "Anonymous: queries about “me” answer UNAUTHENTICATED."),
        current &&
          h("button", { type: "button", className: "gongji-button", onClick: () => setSession(null) }, "Sign out"),
      ),
      problem && h("p", { className: "gongji-error", role: "alert" }, problem),
      h("input", {
        type: "search",
        placeholder: "Filter: name, province, rule…",
        "aria-label": "Filter personas",
        value: filter,
        onChange: (event) => setFilter(event.target.value),
      }),
      h(
        "ul",
        { className: "gongji-list" },
        groupByProvince(shown).map(([title, members]) => [
          h("li", { key: `group:${title}`, className: "gongji-group" }, title),
          ...members.map((persona) =>
            h(PersonaItem, {
              key: persona.key,
              persona,
              chosen: Boolean(current && current.persona.key === persona.key),
              onChoose: choose,
            }),
          ),
        ]),
      ),
    );
  }

  // --- the examples panel -------------------------------------------------------

  function ExamplesPanel({ examples, personas }) {
    const editors = GraphiQL.React.useEditorContext({ nonNull: true });
    const byKey = new Map(personas.map((persona) => [persona.key, persona]));

    function open(example) {
      editors.addTab();
      // addTab fills the new tab with the defaults; put the example in it next.
      setTimeout(() => {
        editors.queryEditor && editors.queryEditor.setValue(example.query);
        editors.variableEditor && editors.variableEditor.setValue(example.variables);
        editors.headerEditor && editors.headerEditor.setValue(example.headers);
      }, 0);
    }

    return h(
      "div",
      { className: "gongji-panel", "data-panel": "examples" },
      h("h2", null, "Examples"),
      h("p", null, "Each opens in a new tab; its first line says which persona to pick."),
      h(
        "ul",
        { className: "gongji-list" },
        examples.map((example) => {
          const persona = example.persona && byKey.get(example.persona);
          return h(
            "li",
            { key: example.title },
            h(
              "button",
              { type: "button", className: "gongji-item", onClick: () => open(example) },
              h("strong", null, example.title),
              h("small", null, persona ? `as ${persona.name}` : "any persona, or none"),
            ),
          );
        }),
      ),
    );
  }

  // --- the page -----------------------------------------------------------------

  function icon(path) {
    return () =>
      h(
        "svg",
        { viewBox: "0 0 24 24", width: "1em", height: "1em", fill: "none", stroke: "currentColor", strokeWidth: 1.5 },
        h("path", { d: path, strokeLinecap: "round", strokeLinejoin: "round" }),
      );
  }

  function Logo() {
    const current = useSession();
    return h(
      "span",
      { className: "gongji-logo" },
      "共济",
      h("span", { className: "gongji-as", "data-logo-persona": current ? current.persona.key : "" },
        current ? `as ${current.persona.name}` : "anonymous"),
    );
  }

  async function main() {
    const [personas, examples] = await Promise.all([
      getJSON("/playground/personas"),
      getJSON("/playground/examples"),
    ]);
    const remembered = personas.find((p) => p.key === localStorage.getItem(STORED_PERSONA));
    if (remembered) await actAs(remembered).catch(() => setSession(null));

    const personasPlugin = {
      title: "Personas",
      icon: icon("M15.75 6a3.75 3.75 0 1 1-7.5 0 3.75 3.75 0 0 1 7.5 0ZM4.5 20.1a7.5 7.5 0 0 1 15 0"),
      content: () => h(PersonasPanel, { personas }),
    };
    const examplesPlugin = {
      title: "Examples",
      icon: icon("M4 6h16M4 12h16M4 18h10"),
      content: () => h(ExamplesPanel, { examples, personas }),
    };
    const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

    const root = ReactDOM.createRoot(document.getElementById("graphiql"));
    document.getElementById("graphiql").className = "";
    root.render(
      h(
        GraphiQL,
        {
          fetcher,
          plugins: [personasPlugin, examplesPlugin, explorerPlugin],
          visiblePlugin: personasPlugin,
          defaultEditorToolsVisibility: true,
          defaultTabs: examples.map((example) => ({
            query: example.query,
            variables: example.variables || undefined,
            headers: example.headers || undefined,
          })),
        },
        h(GraphiQL.Logo, null, h(Logo)),
      ),
    );
  }

  main().catch((error) => {
    const box = document.getElementById("graphiql");
    box.className = "gongji-failed";
    box.textContent = `The playground could not start: ${error.message}`;
  });
})();
