;;; emacs_lsp_mode_driver.el --- Emacs + lsp-mode as a real client of `cllm lsp'  -*- lexical-binding: t -*-
;; Driven by tests/e2e/test_emacs_lsp_mode.py (Emacs 28 with Debian's elpa-lsp-mode 8.0). Loads the user's
;; configuration emacs_lsp_mode.el beside this file with the command $CLLM_EDITOR_CMD (JSON array) and the
;; initializationOptions $CLLM_EDITOR_OPTIONS (JSON), opens $CLLM_EMACS_FILE in the project $CLLM_EMACS_ROOT, asks
;; completion-at-point for its candidates at the end of the buffer and runs cllm.status. Everything it saw goes as
;; JSON to $CLLM_EMACS_OUT; then Emacs exits.

(package-activate-all)               ; as Emacs does at startup, not in --batch: the packages' autoloads
(setq lsp-client-packages nil        ; cllm alone: no other client (clangd, ccls) is registered
      lsp-enable-snippet nil         ; yasnippet is not installed
      lsp-diagnostics-provider :none) ; no flymake: its own C checker (gcc) races in batch Emacs
(load (expand-file-name "emacs_lsp_mode.el" (file-name-directory load-file-name)))
(setq cllm-lsp-command (append (json-parse-string (getenv "CLLM_EDITOR_CMD")) nil)
      cllm-lsp-options (json-parse-string (getenv "CLLM_EDITOR_OPTIONS") :object-type 'plist
                                          :null-object nil :false-object :json-false))

(load (expand-file-name "emacs_report.el" (file-name-directory load-file-name)))

(defun cllm-wait (predicate seconds)
  "Run Emacs' event loop until PREDICATE is true or SECONDS have passed; PREDICATE's last value."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.2))
    value))

(defun cllm-candidates ()
  "completion-at-point's candidates here, each as (text detail), as lsp-mode offers them."
  (let* ((capf (lsp-completion-at-point))
         (probe (buffer-substring-no-properties (nth 0 capf) (nth 1 capf))))
    (vconcat
     (mapcar (lambda (candidate)
               (let ((item (get-text-property 0 'lsp-completion-item candidate)))
                 (list :text (substring-no-properties candidate) :detail (lsp:completion-item-detail? item))))
             (funcall (nth 2 capf) probe nil t)))))

(defun cllm-run ()
  (lsp-workspace-folders-add (getenv "CLLM_EMACS_ROOT"))  ; the answer to lsp-mode's question for the root
  (find-file (getenv "CLLM_EMACS_FILE"))
  (unless (cllm-wait #'lsp-workspaces 5)  ; lsp-deferred waits for an idle moment that batch Emacs may not have
    (lsp))
  (unless (cllm-wait (lambda () (--any (eq (lsp--workspace-status it) 'initialized) (lsp-workspaces))) 120)
    (cllm-finish "lsp-mode did not connect"))
  (goto-char (point-max))
  (puthash "candidates" (cllm-candidates) cllm-report)
  (puthash "status" (lsp-request "workspace/executeCommand" '(:command "cllm.status" :arguments [])) cllm-report)
  (lsp-workspace-shutdown (car (lsp-workspaces)))
  (cllm-finish nil))

(condition-case err
    (cllm-run)
  (error (cllm-finish (format "elisp error: %S" err))))
