@echo off
rem Written by wsgi-gateway install-iis. Run as administrator.
rem Registers this directory with IIS. Safe to run again; uninstall-iis.cmd reverses it.
setlocal DisableDelayedExpansion
set "APPCMD=%windir%\system32\inetsrv\appcmd.exe"
if not exist "%APPCMD%" goto no_appcmd
goto start
:no_appcmd
echo appcmd.exe not found: install IIS (Web Server role) first. 1>&2
exit /b 1
:start

rem The pool: no .NET (the DLL is native code), 32-bit only for a 32-bit DLL.
"%APPCMD%" list apppool "wsgi-gateway Default Web Site" >nul 2>&1 && goto pool_ready
"%APPCMD%" add apppool /name:"wsgi-gateway Default Web Site" || goto failed
:pool_ready
"%APPCMD%" set apppool "wsgi-gateway Default Web Site" /managedRuntimeVersion:"" /managedPipelineMode:Integrated /enable32BitAppOnWin64:false || goto failed
rem A Python app is slow to start and keeps state in its process: the pool starts
rem with IIS (startMode AlwaysRunning) instead of at the first request, and is not
rem shut down after 20 idle minutes (idleTimeout 0), which would start Python and
rem the app again on the next request.
"%APPCMD%" set apppool "wsgi-gateway Default Web Site" /startMode:AlwaysRunning /processModel.idleTimeout:00:00:00 || goto failed
rem Rapid-Fail Protection (left on, IIS's default): after 5 crashes of the pool's
rem worker process within 5 minutes IIS stops the pool, and the site answers 503 until
rem it is started again. A crash is the process dying: a Python fatal error, a fault
rem in a C extension. An app that fails to start is not one: the DLL refuses to load
rem (500s, one line in wsgi-gateway.log) and the process lives on. To see it: the
rem System event log (source WAS) records each crash and the pool being disabled,
rem appcmd list apppool "wsgi-gateway Default Web Site" /text:state shows Stopped, and
rem appcmd start apppool "wsgi-gateway Default Web Site" starts it again.

rem The site root serves this directory in the pool above. Its previous physical
rem path is shown first: uninstall-iis.cmd cannot know it.
echo Physical path of the site root before this script:
"%APPCMD%" list vdir "Default Web Site/" /text:physicalPath
"%APPCMD%" set vdir "Default Web Site/" /physicalPath:"C:\srv\kallithea" || goto failed
"%APPCMD%" set app "Default Web Site/" /applicationPool:"wsgi-gateway Default Web Site" || goto failed
rem Preload: when the pool starts, IIS sends the application a request of its own,
rem so Python and the app are loaded before the first user's request (takes effect
rem with the Application Initialization role service installed).
"%APPCMD%" set app "Default Web Site/" /preloadEnabled:true || goto failed

rem IIS runs only the ISAPI DLLs on its allow-list (404.2 otherwise): the loader,
rem which loads Python and the wsgi-gateway core itself.
"%APPCMD%" set config /section:system.webServer/security/isapiCgiRestriction /-"[path='C:\srv\kallithea\wsgi_gateway_isapi.dll']" /commit:apphost >nul 2>&1
"%APPCMD%" set config /section:system.webServer/security/isapiCgiRestriction /+"[path='C:\srv\kallithea\wsgi_gateway_isapi.dll',allowed='True',description='wsgi-gateway']" /commit:apphost || goto failed

rem web.config maps the handler: IIS locks that section by default, and an
rem ISAPI handler needs Execute access.
"%APPCMD%" unlock config "Default Web Site" /section:system.webServer/handlers || goto failed
"%APPCMD%" set config "Default Web Site" /section:system.webServer/handlers /accessPolicy:"Read, Script, Execute" /commit:apphost || goto failed

rem The pool's identity reads this directory and appends to the error log.
icacls "C:\srv\kallithea" /grant "IIS AppPool\wsgi-gateway Default Web Site:(OI)(CI)RX" || goto failed
icacls "C:\srv\kallithea\wsgi-gateway.log" /grant "IIS AppPool\wsgi-gateway Default Web Site:M" || goto failed

echo install-iis.cmd: done. Recycle the pool (or iisreset) to load new code.
exit /b 0

:failed
echo install-iis.cmd: the command above failed; the steps after it were not run. 1>&2
exit /b 1
