" vim_ale.vim - cllm's completions in Vim 9 with ALE (Debian's vim-ale, or ALE from its repository).
" Paste into your vimrc. ALE starts `cllm lsp` for C buffers as one more LSP "linter"; its suggestions come with
" ALE's completion as you type and with <C-x><C-o> (the omnifunc). tests/e2e/test_vim_ale.py loads this very file.
filetype plugin on                        " C buffers get the filetype c
let g:ale_completion_enabled = 1          " before ALE loads
packadd! ale                              " Debian's vim-ale is an optional package
let g:cllm_options = get(g:, 'cllm_options', {})   " initializationOptions, e.g. {'maxTokens': 32}

function! CllmProjectRoot(buffer) abort
    let l:git = ale#path#FindNearestDirectory(a:buffer, '.git')
    return empty(l:git) ? expand('#' . a:buffer . ':p:h') : fnamemodify(l:git, ':h:h')
endfunction

call ale#linter#Define('c', {
\   'name': 'cllm',
\   'lsp': 'stdio',
\   'executable': 'cllm',
\   'command': '%e lsp',
\   'project_root': function('CllmProjectRoot'),
\   'initialization_options': {buffer -> g:cllm_options},
\})
autocmd FileType c setlocal omnifunc=ale#completion#OmniFunc   " after Vim's C ftplugin sets its own
