;;; emacs_eglot.el --- Emacs + eglot as a real client of `cllm lsp'  -*- lexical-binding: t -*-
;; Driven by tests/e2e/test_emacs.py (Emacs 28 with Debian's elpa-eglot 1.9, or Emacs 29+ with its own).
;; Opens $CLLM_EMACS_FILE, connects eglot to the command $CLLM_EMACS_CMD (JSON array) with the
;; initializationOptions $CLLM_EMACS_OPTIONS (JSON), asks completion-at-point for its candidates at the end of
;; the buffer, runs cllm.status, then cllm.trainWorkspace and polls cllm.status until the training ends.
;; Everything it saw goes as JSON to $CLLM_EMACS_OUT; then Emacs exits.

(require 'eglot)

(load (expand-file-name "emacs_report.el" (file-name-directory load-file-name)))

(defun cllm-candidates ()
  "completion-at-point's candidates here, each as (text detail), as eglot offers them."
  (let* ((capf (eglot-completion-at-point))
         (probe (buffer-substring-no-properties (nth 0 capf) (nth 1 capf))))
    (vconcat
     (mapcar (lambda (candidate)
               (let ((item (get-text-property 0 'eglot--lsp-item candidate)))
                 (list :text (substring-no-properties candidate) :detail (plist-get item :detail))))
             (funcall (nth 2 capf) probe nil t)))))

(defun cllm-run ()
  (let* ((command (append (json-parse-string (getenv "CLLM_EMACS_CMD")) nil))
         (options (json-parse-string (getenv "CLLM_EMACS_OPTIONS") :object-type 'plist
                                     :null-object nil :false-object :json-false))
         (eglot-server-programs `((c-mode . (,@command :initializationOptions ,options))))
         (eglot-sync-connect 120))
    (find-file (getenv "CLLM_EMACS_FILE"))
    (apply #'eglot (eglot--guess-contact))
    (let ((deadline (+ (float-time) 120)))  ; eglot may go on connecting in the background
      (while (and (not (eglot-current-server)) (< (float-time) deadline))
        (accept-process-output nil 0.2)))
    (let ((server (eglot-current-server)))
      (unless server (cllm-finish "eglot did not connect"))
      (goto-char (point-max))
      (puthash "candidates" (cllm-candidates) cllm-report)
      (puthash "statusBefore" (eglot-execute-command server "cllm.status" []) cllm-report)
      (puthash "train" (eglot-execute-command server "cllm.trainWorkspace" []) cllm-report)
      (puthash "statusDuring" (eglot-execute-command server "cllm.status" []) cllm-report)
      (let ((deadline (+ (float-time) 300)) status)
        (while (progn (setq status (eglot-execute-command server "cllm.status" []))
                      (and (equal (plist-get (plist-get status :training) :state) "training")
                           (< (float-time) deadline)))
          (sleep-for 0.5))
        (puthash "status" status cllm-report))
      (eglot-shutdown server)
      (cllm-finish nil))))

(condition-case err
    (cllm-run)
  (error (cllm-finish (format "elisp error: %S" err))))
