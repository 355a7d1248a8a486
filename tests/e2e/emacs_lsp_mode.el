;;; emacs_lsp_mode.el --- cllm's completions in Emacs with lsp-mode  -*- lexical-binding: t -*-
;; Paste into your init file (lsp-mode 8+: Debian's elpa-lsp-mode, or MELPA's lsp-mode). cllm runs as an add-on
;; server, beside clangd or ccls when lsp-mode starts one, so its suggestions join their completion list
;; (M-x completion-at-point, or company/corfu). tests/e2e/test_emacs_lsp_mode.py loads this very file.

(require 'lsp-mode)

(defvar cllm-lsp-command '("cllm" "lsp")
  "The command that starts cllm's language server.")

(defvar cllm-lsp-options nil
  "cllm's initializationOptions as a plist, for instance (:maxTokens 32 :modelDir \"/home/me/models\").")

(lsp-register-client
 (make-lsp-client :new-connection (lsp-stdio-connection (lambda () cllm-lsp-command))
                  :activation-fn (lsp-activate-on "c")
                  :initialization-options (lambda () cllm-lsp-options)
                  :add-on? t
                  :server-id 'cllm))

(add-hook 'c-mode-hook #'lsp-deferred)
