@echo off
rem Written by wsgi-gateway install-iis. Run as administrator.
rem Reverses install-iis.cmd. The files in this directory are left in place.
setlocal DisableDelayedExpansion
set "APPCMD=%windir%\system32\inetsrv\appcmd.exe"
if not exist "%APPCMD%" goto no_appcmd
goto start
:no_appcmd
echo appcmd.exe not found: install IIS (Web Server role) first. 1>&2
exit /b 1
:start
set "FAILED="

rem Handler access and the section lock go back to the IIS defaults.
"%APPCMD%" set config "Default Web Site" /section:system.webServer/handlers /accessPolicy:"Read, Script" /commit:apphost || set FAILED=1
"%APPCMD%" lock config "Default Web Site" /section:system.webServer/handlers || set FAILED=1

rem The site root goes back to the IIS defaults (install-iis.cmd showed the
rem path it had before; set it again with appcmd set vdir if it differs).
"%APPCMD%" set app "Default Web Site/" /applicationPool:"DefaultAppPool" /preloadEnabled:false || set FAILED=1
"%APPCMD%" set vdir "Default Web Site/" /physicalPath:"%SystemDrive%\inetpub\wwwroot" || set FAILED=1
"%APPCMD%" set config /section:system.webServer/security/isapiCgiRestriction /-"[path='C:\srv\kallithea\wsgi_gateway_isapi.dll']" /commit:apphost || set FAILED=1

rem The grants name the pool's identity, so they go before the pool.
icacls "C:\srv\kallithea\wsgi-gateway.log" /remove "IIS AppPool\wsgi-gateway Default Web Site" || set FAILED=1
icacls "C:\srv\kallithea" /remove "IIS AppPool\wsgi-gateway Default Web Site" || set FAILED=1
"%APPCMD%" delete apppool "wsgi-gateway Default Web Site" || set FAILED=1

if defined FAILED goto failed
echo uninstall-iis.cmd: done.
exit /b 0
:failed
echo uninstall-iis.cmd: some steps failed (see above). 1>&2
exit /b 1
