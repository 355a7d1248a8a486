" Driven by tests/e2e/test_vim_ale.py, after the user's configuration vim_ale.vim (-u) with g:cllm_options:
" opens $CLLM_VIM_FILE, runs cllm.status through ALE, then completes at the end of the buffer with <C-x><C-o>
" in Insert mode. What it saw (the status, the item Vim completed, the last line) goes as JSON to $CLLM_VIM_OUT;
" then Vim quits.
let g:cllm_report = {'failure': v:null}

function! s:Finish(failure) abort
    let g:cllm_report.failure = a:failure is v:null ? v:null : a:failure . "\n" . execute('messages')
    call writefile([json_encode(g:cllm_report)], $CLLM_VIM_OUT)
    qall!
endfunction

function! s:Wait(key, seconds) abort
    let l:deadline = reltimefloat(reltime()) + a:seconds
    while !has_key(g:cllm_report, a:key) && reltimefloat(reltime()) < l:deadline
        sleep 100m
    endwhile
    return has_key(g:cllm_report, a:key)
endfunction

function! s:OnStatus(response) abort
    let g:cllm_report.status = get(a:response, 'result', a:response)
endfunction

function! s:Run() abort
    execute 'edit ' . fnameescape($CLLM_VIM_FILE)
    let l:message = [0, 'workspace/executeCommand', {'command': 'cllm.status', 'arguments': []}]
    call ale#lsp_linter#SendRequest(bufnr(''), 'cllm', l:message, function('s:OnStatus'))
    if !s:Wait('status', 120)
        return s:Finish('cllm.status got no answer through ALE')
    endif
    autocmd CompleteDone * let g:cllm_report.completed = v:completed_item
    call feedkeys("GA\<C-x>\<C-o>", 'xt')
    let g:cllm_report.line = getline('$')
    call s:Finish(v:null)
endfunction

try
    call s:Run()
catch
    call s:Finish('Vim error: ' . v:exception . ' at ' . v:throwpoint)
endtry
