<#
.SYNOPSIS
    Installs, upgrades or removes the WardWatch agent on a Windows PC.

.DESCRIPTION
    Install: copies the frozen build (dist\wardwatch-agent from wardwatch-agent.spec) to -InstallDir, enrols with
    the collector, registers the WardWatchAgent service (automatic start, restarted on failure) and a logon task
    that starts the session helper for every user who signs in, then starts the service and prints a summary.
    Upgrade (-Upgrade): replaces the program files; identity, certificates and unsent alerts in -StateDir stay.
    Uninstall (-Uninstall -UninstallCode CODE): the collector checks the code and marks the device removed; only
    then are the service, the task, the program and the state removed. Without the right code nothing changes.

    Run as an administrator (or as SYSTEM from Intune / a GPO startup script). Exit status 0 on success, 2 when
    the request is refused or wrong, 1 on an unexpected failure.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File install.ps1 -EnrolmentString 'wardwatch-enrol:v1:...'
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File install.ps1 -Upgrade -Source \\server\share\wardwatch-agent
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File install.ps1 -Uninstall -UninstallCode 'xxxx-xxxx-xxxx-xxxx'
#>
[CmdletBinding(DefaultParameterSetName = 'Install')]
param(
    [Parameter(ParameterSetName = 'Install', Mandatory = $true, Position = 0)]
    [string]$EnrolmentString,

    [Parameter(ParameterSetName = 'Upgrade', Mandatory = $true)]
    [switch]$Upgrade,

    [Parameter(ParameterSetName = 'Uninstall', Mandatory = $true)]
    [switch]$Uninstall,

    [Parameter(ParameterSetName = 'Uninstall', Mandatory = $true)]
    [string]$UninstallCode,

    [Parameter(ParameterSetName = 'Install')]
    [ValidateSet('primary', 'secondary', 'staff')]
    [string]$AgeBand,

    [Parameter(ParameterSetName = 'Install')]
    [Parameter(ParameterSetName = 'Upgrade')]
    [string]$Source = (Join-Path $PSScriptRoot 'dist\wardwatch-agent'),

    [string]$InstallDir = (Join-Path $env:ProgramFiles 'WardWatch'),
    [string]$StateDir = (Join-Path $env:ProgramData 'WardWatch\agent'),
    [switch]$NoStart
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ServiceName = 'WardWatchAgent'
$TaskName = 'WardWatch session helper'
$Cli = Join-Path $InstallDir 'wardwatch-agent.exe'
$ServiceExe = Join-Path $InstallDir 'wardwatch-agent-service.exe'

function Stop-WithError([string]$Message) {
    Write-Error "wardwatch-install: $Message" -ErrorAction Continue
    exit 2
}

function Assert-Administrator {
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        Stop-WithError 'run this as an administrator (or as SYSTEM from Intune / a startup script)'
    }
}

function Invoke-Agent([string[]]$Arguments) {
    & $Cli --state $StateDir @Arguments
    return $LASTEXITCODE
}

function Set-Maintenance([string]$Reason) {
    # The service reports a stop without this marker to the technician as a coverage gap.
    if (Test-Path $StateDir) { Set-Content -Path (Join-Path $StateDir 'maintenance') -Value $Reason }
}

function Protect-StateDir {
    # Identity keys and the spool: SYSTEM and administrators only. The helper's local channel (ipc\) is opened
    # to users by the service itself.
    New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
    & icacls.exe $StateDir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null
}

function Grant-HelperReads {
    # The session helper runs as the pupil: it reads agent.json (age band, notice, privacy lists) and the
    # service's verified keyword bundle, never the keys or the spool. S-1-5-32-545 is the local Users group.
    $config = Join-Path $StateDir 'agent.json'
    if (Test-Path $config) { & icacls.exe $config /grant '*S-1-5-32-545:R' | Out-Null }
    $bundle = Join-Path $StateDir 'bundle'
    New-Item -ItemType Directory -Force -Path $bundle | Out-Null
    & icacls.exe $bundle /grant '*S-1-5-32-545:(OI)(CI)R' | Out-Null
}

function Copy-Program {
    if (-not (Test-Path (Join-Path $Source 'wardwatch-agent.exe'))) {
        Stop-WithError "no frozen build at $Source (build it with: pyinstaller installer\windows\wardwatch-agent.spec)"
    }
    New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
    Copy-Item -Path (Join-Path $Source '*') -Destination $InstallDir -Recurse -Force
}

function Register-AgentService {
    $existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if (-not $existing) {
        New-Service -Name $ServiceName -BinaryPathName "`"$ServiceExe`"" -DisplayName 'WardWatch safeguarding agent' `
            -Description 'Sends signed safeguarding alerts from this PC to the school''s WardWatch collector.' `
            -StartupType Automatic | Out-Null
    }
    # Restart after a crash (5 s, 5 s, then 30 s), counting failures over a day.
    & sc.exe failure $ServiceName reset= 86400 actions= restart/5000/restart/5000/restart/30000 | Out-Null
    & sc.exe failureflag $ServiceName 1 | Out-Null
    # Pupils are standard users: the default service ACL already lets only administrators stop it. Start it
    # delayed so it does not compete with logon.
    & sc.exe config $ServiceName start= delayed-auto | Out-Null
    [Environment]::SetEnvironmentVariable('WARDWATCH_STATE', $StateDir, 'Machine')
}

function Register-HelperTask {
    # Every user who signs in gets the helper in their own session (it captures keys there, not the service).
    $action = New-ScheduledTaskAction -Execute $Cli -Argument "--state `"$StateDir`" session"
    $trigger = New-ScheduledTaskTrigger -AtLogOn
    $principal = New-ScheduledTaskPrincipal -GroupId 'S-1-5-32-545' -RunLevel Limited  # BUILTIN\Users
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
        -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
        -MultipleInstances IgnoreNew -Hidden
    Register-ScheduledTask -TaskName $TaskName -TaskPath '\WardWatch\' -Action $action -Trigger $trigger `
        -Principal $principal -Settings $settings -Force | Out-Null
}

function Write-Summary([string]$What) {
    Write-Output ''
    Write-Output "WardWatch agent $What."
    Write-Output "  program:        $InstallDir"
    Write-Output "  state:          $StateDir"
    Write-Output "  service:        $ServiceName ($((Get-Service -Name $ServiceName).Status))"
    Write-Output "  session helper: scheduled task \WardWatch\$TaskName (at every logon)"
    & $Cli --state $StateDir status
    Write-Output "Send a test:      `"$Cli`" --state `"$StateDir`" send-test-alert"
}

Assert-Administrator
switch ($PSCmdlet.ParameterSetName) {
    'Install' {
        Copy-Program
        Protect-StateDir
        if (Test-Path (Join-Path $StateDir 'agent.json')) {
            Write-Output '==> already enrolled; keeping that identity (use -Upgrade to update)'
        } else {
            $enrolArgs = @('enroll', $EnrolmentString)
            if ($AgeBand) { $enrolArgs += @('--age-band', $AgeBand) }
            if ((Invoke-Agent $enrolArgs) -ne 0) { Stop-WithError 'enrolment failed (see the line above)' }
        }
        Grant-HelperReads
        Register-AgentService
        Register-HelperTask
        if (-not $NoStart) { Start-Service -Name $ServiceName }
        Write-Summary 'installed'
    }
    'Upgrade' {
        if (-not (Test-Path (Join-Path $StateDir 'agent.json'))) { Stop-WithError "nothing to upgrade in $StateDir" }
        Set-Maintenance 'upgrade'
        Stop-Service -Name $ServiceName -ErrorAction SilentlyContinue
        Copy-Program
        Grant-HelperReads
        Register-AgentService
        Register-HelperTask
        Start-Service -Name $ServiceName
        Write-Summary 'upgraded'
    }
    'Uninstall' {
        if (-not (Test-Path $Cli)) { Stop-WithError "no WardWatch installation in $InstallDir" }
        Set-Maintenance 'uninstall'
        Stop-Service -Name $ServiceName -ErrorAction SilentlyContinue
        # The collector checks the code and marks the device removed; refused means nothing here is touched.
        if ((Invoke-Agent @('uninstall', '--code', $UninstallCode)) -ne 0) {
            Remove-Item -Path (Join-Path $StateDir 'maintenance') -ErrorAction SilentlyContinue
            Start-Service -Name $ServiceName -ErrorAction SilentlyContinue
            Stop-WithError 'uninstall refused; WardWatch stays installed and running'
        }
        Unregister-ScheduledTask -TaskName $TaskName -TaskPath '\WardWatch\' -Confirm:$false -ErrorAction SilentlyContinue
        & sc.exe delete $ServiceName | Out-Null
        [Environment]::SetEnvironmentVariable('WARDWATCH_STATE', $null, 'Machine')
        Remove-Item -Recurse -Force -Path $InstallDir, $StateDir -ErrorAction SilentlyContinue
        Write-Output 'WardWatch removed from this PC; the collector shows it as removed.'
    }
}
exit 0
