;;; emacs_report.el --- the report both Emacs drivers write for their tests  -*- lexical-binding: t -*-
;; Loaded by emacs_eglot.el and emacs_lsp_mode_driver.el: `cllm-report' collects what the driver saw, and
;; `cllm-finish' writes it as JSON to $CLLM_EMACS_OUT and exits.

(defvar cllm-report (make-hash-table :test #'equal) "What the test reads back.")

(defun cllm-finish (failure)
  "Write the report with FAILURE (nil when all went well, else with Emacs' messages) and exit."
  (puthash "failure" (and failure (format "%s\n%s" failure (with-current-buffer "*Messages*" (buffer-string))))
           cllm-report)
  (with-temp-file (getenv "CLLM_EMACS_OUT")
    (insert (json-serialize cllm-report :null-object nil :false-object :json-false)))
  (kill-emacs 0))
