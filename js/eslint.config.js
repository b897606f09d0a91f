// ESLint (flat config) for the front end and its tests. Run from js/: `npm run lint`.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["cnn_widgets/static/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
    rules: {
      // Untrusted text must reach the DOM through textContent or attributes only.
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "use textContent" },
        { property: "outerHTML", message: "use textContent" },
        { property: "insertAdjacentHTML", message: "build elements instead" },
      ],
      // Panels stay small enough to read in one go; split a painter before it grows past this.
      "max-lines-per-function": [
        "error",
        { max: 120, skipBlankLines: true, skipComments: true, IIFEs: true },
      ],
      "no-restricted-syntax": [
        "error",
        { selector: "CallExpression[callee.property.name='write']", message: "no document.write" },
      ],
    },
  },
  {
    files: ["js/**/*.js", "js/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
  { ignores: ["js/node_modules/**"] },
];
