// The Gongji playground: GraphiQL with two panels and a bar of our own.
//   Personas: act as a roster person; every request then carries their token.
//   Examples: the walkthroughs; the first few open as tabs on a first visit.
//   The persona bar, above a tab that holds an example: whom the example is
//   for, whether that is whom you act as, and a button to act as them.
// Plain script over the UMD globals React, ReactDOM, GraphiQL and
// GraphiQLPluginExplorer (and graphqlWs, loaded on the first subscription), all
// served by the gateway: no build step, no CDN.
(function () {
  "use strict";

  const h = React.createElement;
  const { useEffect, useState } = React;
  const STORED_PERSONA = "gongji:persona";
  const ENDPOINT = "/graphql";
  const OPENED_AT_FIRST = 4; // examples opened as tabs on a first visit; the panel has them all

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

  // The operation a request runs: "query", "mutation" or "subscription" (undefined
  // when the text does not parse, or names no operation it holds).
  function operationOf(params) {
    try {
      const operations = GraphiQL.GraphQL.parse(params.query).definitions.filter(
        (definition) => definition.kind === "OperationDefinition",
      );
      const chosen =
        operations.length === 1
          ? operations[0]
          : operations.find((definition) => definition.name && definition.name.value === params.operationName);
      return chosen ? chosen.operation : undefined;
    } catch (_) {
      return undefined;
    }
  }

  // --- subscriptions: graphql-transport-ws at the same origin's /graphql -----------

  // graphql-ws's UMD build (the global graphqlWs), loaded on the first subscription:
  // the page does without it until then.
  let graphqlWs = null;
  function loadGraphqlWs() {
    if (!graphqlWs) {
      graphqlWs = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "/playground/vendor/graphql-ws.min.js";
        script.onload = () => resolve(window.graphqlWs);
        script.onerror = () => {
          graphqlWs = null; // try again on the next subscription
          script.remove();
          reject(new Error("could not load /playground/vendor/graphql-ws.min.js: run scripts/install"));
        };
        document.head.appendChild(script);
      });
    }
    return graphqlWs;
  }

  const FORBIDDEN = 4403; // the gateway refuses a connection without a valid token
  const CLOSED = {
    [FORBIDDEN]: "the gateway wants a valid token: pick a persona, or mend the Authorization header",
    4401: "the token the connection signed in with ran out: run the subscription again",
    4429: "too many connections for this persona or address: stop another subscription",
  };

  // A CloseEvent says nothing in GraphiQL's result pane (its fields are not its own):
  // an error that says which close, and what to do (a plain object: an Error would
  // show its stack too).
  function explained(error) {
    if (error && typeof error === "object" && "code" in error && "reason" in error) {
      const said = `The subscription's connection closed: ${error.code} ${error.reason || ""}`.trim();
      const hint = CLOSED[error.code] ? ` (${CLOSED[error.code]})` : "";
      return { message: said + hint, extensions: { closeCode: error.code, closeReason: error.reason || "" } };
    }
    return error;
  }

  // One client per token: it connects on the first subscription, signs in with the
  // token in connection_init's payload, carries every subscription run with that
  // token, and closes when the last one stops (graphql-ws's lazy mode). A new token
  // (another persona, a renewal) gets a new client; the old one closes when its
  // subscriptions stop.
  let socket = null; // { authorization, client }
  function wsClient(library, authorization) {
    if (!socket || socket.authorization !== authorization) {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      socket = {
        authorization,
        client: library.createClient({
          url: `${scheme}//${location.host}${ENDPOINT}`,
          connectionParams: authorization ? { authorization } : {},
          // graphql-ws retries a 4403 in case access is granted later; it will not be
          shouldRetry: (event) =>
            Boolean(event && typeof event === "object" && "code" in event && event.code !== FORBIDDEN),
        }),
      };
    }
    return socket.client;
  }

  // An Observable of the subscription's results, for GraphiQL: `next` for each event,
  // and Stop (or another run) unsubscribes at once.
  async function subscribe(params, authorization) {
    const client = wsClient(await loadGraphqlWs(), authorization);
    const { query, variables, operationName, extensions } = params;
    const payload = { query, variables: variables || {}, operationName: operationName || undefined, extensions };
    return {
      subscribe(observer) {
        const dispose = client.subscribe(payload, {
          next: (result) => observer.next && observer.next(result),
          error: (error) => observer.error && observer.error(explained(error)),
          complete: () => observer.complete && observer.complete(),
        });
        return { unsubscribe: dispose };
      },
    };
  }

  // Requests carry the persona's token, unless the headers pane sets its own: over HTTP
  // as the Authorization header; a subscription's connection in connection_init.
  const baseFetcher = GraphiQL.createFetcher({ url: ENDPOINT });
  function fetcher(params, options) {
    const own = (options && options.headers) || {};
    const headers = { ...own };
    const ownName = Object.keys(own).find((name) => name.toLowerCase() === "authorization");
    if (session && !ownName) headers.Authorization = `Bearer ${session.token}`;
    const named = withOperationName(params);
    if (operationOf(named) === "subscription") {
      const authorization = ownName ? String(own[ownName]) : headers.Authorization;
      return subscribe(named, authorization);
    }
    return baseFetcher(named, { ...options, headers });
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

  // --- examples, and whom each is for ----------------------------------------------

  // An example's first line names its persona ("# Pick the persona 王建国 (...)."):
  // the line tells whom a tab's example is for even after the rest is edited, and
  // after a reload (GraphiQL keeps the tabs' text, nothing else).
  function firstLine(text) {
    return (text || "").split("\n", 1)[0].trim();
  }

  // The active tab's query, kept current as the tab changes or is edited.
  function useActiveQuery() {
    const editors = GraphiQL.React.useEditorContext({ nonNull: true });
    const editor = editors.queryEditor;
    const [text, setText] = useState("");
    useEffect(() => {
      if (!editor) return undefined;
      const update = () => setText(editor.getValue());
      update();
      editor.on("change", update); // a tab change sets the editor's value too
      return () => editor.off("change", update);
    }, [editor]);
    return text;
  }

  // What the active tab holds: { example, persona } where example is the one it is
  // as shipped (or null once edited) and persona whom its first line names (null:
  // any persona, or none); null for a tab of one's own.
  function useActiveExample(examples, personas) {
    const text = useActiveQuery();
    const line = firstLine(text);
    const named = line ? examples.find((e) => firstLine(e.query) === line) : undefined;
    if (!named) return null;
    const persona = named.persona ? personas.find((p) => p.key === named.persona) : null;
    return { example: examples.find((e) => e.query === text) || null, persona: persona || null };
  }

  function ActAsButton({ persona, onProblem }) {
    return h(
      "button",
      {
        type: "button",
        className: "gongji-button gongji-act",
        "data-act-as": persona.key,
        onClick: () =>
          actAs(persona).catch((error) => onProblem(`Could not act as ${persona.name}: ${error.message}`)),
      },
      `Act as ${persona.name}`,
    );
  }

  // The bar between the tabs and the editors. GraphiQL has no slot there, so it is a
  // portal into a box of ours placed just before the session (the editors and the
  // result); GraphiQL's React tree leaves a node it did not make where it is.
  function usePlaceBefore(selector, id) {
    const [box, setBox] = useState(null);
    useEffect(() => {
      const anchor = document.querySelector(selector);
      if (!anchor) return;
      let node = document.getElementById(id);
      if (!node) {
        node = document.createElement("div");
        node.id = id;
      }
      if (node.nextElementSibling !== anchor) anchor.parentNode.insertBefore(node, anchor);
      if (node !== box) setBox(node);
    });
    return box;
  }

  function PersonaBar({ examples, personas }) {
    const current = useSession();
    const active = useActiveExample(examples, personas);
    const [problem, setProblem] = useState(null);
    const box = usePlaceBefore(".graphiql-session", "gongji-persona-bar");
    useEffect(() => setProblem(null), [active && active.persona, current && current.persona.key]);
    if (!box || !active) return null;

    const { persona } = active;
    const you = current ? h("strong", null, current.persona.name) : "anonymous";
    let state;
    let content;
    if (persona === null) {
      state = "any";
      content = [h("span", { key: "say" }, "This example works as any persona, or none.")];
    } else if (current && current.persona.key === persona.key) {
      state = "matches";
      content = [
        h("span", { key: "say" }, "✓ Acting as ", h("strong", null, persona.name), ", as this example expects."),
      ];
    } else {
      state = "differs";
      content = [
        h(
          "span",
          { key: "say" },
          "This example is for ",
          h("strong", { title: persona.notes }, persona.name),
          "; you act as ",
          you,
          ".",
        ),
        h(ActAsButton, { key: "act", persona, onProblem: setProblem }),
      ];
    }
    return ReactDOM.createPortal(
      h(
        "div",
        {
          className: `gongji-bar gongji-bar-${state}`,
          role: "status",
          "data-persona-bar": state,
          "data-example-persona": persona ? persona.key : "",
        },
        ...content,
        problem && h("span", { key: "problem", className: "gongji-error", role: "alert" }, problem),
      ),
      box,
    );
  }

  // --- the examples panel -------------------------------------------------------

  function ExamplesPanel({ examples, personas, world }) {
    const editors = GraphiQL.React.useEditorContext({ nonNull: true });
    const active = useActiveExample(examples, personas);
    const byKey = new Map(personas.map((persona) => [persona.key, persona]));

    // The tab that holds this example as shipped (its text may lag the editor by
    // GraphiQL's half-second debounce; the example's own text never changes).
    function tabOf(example) {
      return editors.tabs.findIndex((tab) => tab.query === example.query);
    }

    function open(example) {
      const index = tabOf(example);
      if (index >= 0) {
        editors.changeTab(index);
        return;
      }
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
      h(
        "p",
        null,
        "Each opens in a tab (the one it is in, if open). The bar above the editor says whom it is for, " +
          "and acts as them in one click. They run in this order on a fresh world.",
      ),
      h(
        "ul",
        { className: "gongji-list" },
        examples.map((example) => {
          const persona = example.persona && byKey.get(example.persona);
          const shown = Boolean(active && active.example === example);
          return h(
            "li",
            { key: example.title },
            h(
              "button",
              {
                type: "button",
                className: "gongji-item",
                "aria-current": shown ? "true" : undefined,
                "data-example": example.title,
                onClick: () => open(example),
              },
              h(
                "span",
                { className: "gongji-line" },
                h("strong", null, example.title),
                (shown || tabOf(example) >= 0) && h("span", { className: "gongji-meta" }, shown ? "shown" : "open"),
              ),
              h("small", null, persona ? `as ${persona.name}` : "any persona, or none"),
            ),
          );
        }),
      ),
      h(
        "p",
        { className: "gongji-note", "data-reset-hint": "" },
        world.reset
          ? ["Start over with a fresh world: stop the gateway, run ", h("code", { key: "c" }, world.reset), ", start it again."]
          : "This gateway keeps its world in memory: restart it for a fresh one.",
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
    const [personas, examples, world] = await Promise.all([
      getJSON("/playground/personas"),
      getJSON("/playground/examples"),
      getJSON("/playground/world"),
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
      content: () => h(ExamplesPanel, { examples, personas, world }),
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
          // a first visit opens the first few; GraphiQL remembers the tabs after that
          defaultTabs: examples.slice(0, OPENED_AT_FIRST).map((example) => ({
            query: example.query,
            variables: example.variables || undefined,
            headers: example.headers || undefined,
          })),
        },
        h(GraphiQL.Logo, null, h(Logo), h(PersonaBar, { examples, personas })),
      ),
    );
  }

  main().catch((error) => {
    const box = document.getElementById("graphiql");
    box.className = "gongji-failed";
    box.textContent = `The playground could not start: ${error.message}`;
  });
})();
